// Package container holds no code: its directory is the container image
// (Containerfile, build.sh) and the 3-node compose file, and its test
// (compose_test.go) builds the image and runs a failover drill on the
// compose cluster with podman.
package container
