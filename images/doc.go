// Package images knows which image serves which runtime (the catalog) and
// makes sure an image is in containerd's store and unpacked into the
// snapshotter before a task needs it. It imports image archives; pulling
// from registries comes with registry host configuration.
//
// It never imports package runner: the runner asks it for a runtime and an
// image, and nothing flows back.
package images
