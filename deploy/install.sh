#!/bin/sh
# Installs what the deploy/ tests need from Debian packages: podman,
# podman-compose and runc (deploy/container: the image and the compose
# drill; netavark and aardvark-dns give the compose network its names),
# promtool (deploy/monitoring, package prometheus), openssl
# (deploy/kubernetes/make-secrets.sh), systemd-analyze, systemd-sysusers
# and setpriv (deploy/systemd). Idempotent: does nothing when everything
# is present. Needs root.
set -eu
need=""
want() { # COMMAND PACKAGE...
	command -v "$1" >/dev/null 2>&1 || need="$need $(shift; echo "$@")"
}
want podman podman netavark aardvark-dns
want podman-compose podman-compose
want runc runc
want promtool prometheus
want openssl openssl
want systemd-analyze systemd
want systemd-sysusers systemd
want setpriv util-linux
if [ -z "$need" ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deploy/install.sh: needs root to apt-get install$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq $need
