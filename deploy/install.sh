#!/bin/sh
# Installs what the deploy/ tests need from Debian packages: podman,
# podman-compose and runc (deploy/container: the image and the compose
# drill; netavark and aardvark-dns give the compose network its names),
# promtool (deploy/monitoring, package prometheus), openssl
# (deploy/kubernetes/make-secrets.sh), systemd-analyze, systemd-sysusers
# and setpriv (deploy/systemd). Idempotent; needs root.
exec "$(dirname "$0")/../.ci/debian-packages" \
	podman=podman,netavark,aardvark-dns \
	podman-compose=podman-compose \
	runc=runc \
	promtool=prometheus \
	openssl=openssl \
	systemd-analyze=systemd \
	systemd-sysusers=systemd \
	setpriv=util-linux
