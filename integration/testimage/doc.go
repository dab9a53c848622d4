// Package testimage builds small container images on the local machine, for
// tests and demos that cannot reach a registry.
//
// [WriteArchive] turns a directory into a single-layer image and writes it as
// an OCI image layout archive, the format containerd's client.Import (and
// `ctr images import`) reads. The index names the image with the full
// reference, so an import needs no extra options to find it by name. The
// output is deterministic: the same directory gives the same digests, so
// tests can compare builds byte for byte.
//
// [BusyboxRootfs] lays out a minimal root filesystem around a static busybox
// binary (Debian's busybox-static), and [BuildBusyboxArchive] combines the
// two. Nothing here needs root or a daemon.
package testimage
