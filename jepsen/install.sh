#!/bin/sh
# Installs what the jepsen harness needs from Debian packages: iptables
# (partitions, loss, NFQUEUE delay) and iproute2 (ip netns, veth, bridge).
# Idempotent; needs root.
exec "$(dirname "$0")/../.ci/debian-packages" iptables=iptables ip=iproute2
