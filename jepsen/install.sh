#!/bin/sh
# Installs what the jepsen harness needs from Debian packages: iptables
# (partitions, loss, NFQUEUE delay) and iproute2 (ip netns, veth, bridge).
# Idempotent: does nothing when both are present. Needs root.
set -eu
need=""
command -v iptables >/dev/null 2>&1 || need="$need iptables"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
if [ -z "$need" ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "jepsen/install.sh: needs root to apt-get install$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need
