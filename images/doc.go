// Package images knows which image serves which runtime (the catalog) and
// gets those images into containerd's store, unpacked into the
// snapshotter, for the host's platform: Pull fetches them from registries
// through containerd's client, with containerd's own hosts.toml host
// configuration and logins from a Docker-style config.json, reporting
// progress per blob; Import reads OCI and `docker save` archives; Ensure
// finds what is already there; List and Remove manage the store.
// BuildRuntimes builds the runtimes' images on the host instead, from the
// Debian mirror of its apt sources with debootstrap (BuildDebianArchive,
// WriteArchive), and WithLocalImages lets the catalog use them when its
// own images are absent.
//
// Errors carry errdefs classes (invalid argument, not found,
// unauthenticated, unavailable) and, where callers need them, sentinels:
// ErrPlatformMismatch, ErrRegistryAuth, ErrRegistryUnreachable.
//
// It never imports package runner: the runner asks it for a runtime and an
// image, and nothing flows back.
package images
