#!/bin/sh
# build.sh: build the mimi-hub container image with podman.
#
#   deploy/container/build.sh [IMAGE]     default IMAGE: localhost/mimi-hub:latest
#
# Compiles a static mimi-hub (CGO_ENABLED=0, with the VCS revision when
# built from a clone) into a temporary build context beside an empty data
# folder, then runs podman build on the Containerfile. Set CONTAINERS_CONF
# for hosts whose podman needs another runtime (see deploy/README.md).
set -eu
image=${1:-localhost/mimi-hub:latest}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ctx=$(mktemp -d "${TMPDIR:-/tmp}/mimi-hub-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
mkdir "$ctx/data"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -buildvcs=auto -o "$ctx/mimi-hub" ./cmd/mimi-hub)
"$ctx/mimi-hub" -version
podman build --format docker --file "$here/Containerfile" --tag "$image" "$ctx"
