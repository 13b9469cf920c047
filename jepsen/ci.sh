#!/bin/sh
# CI entry of the jepsen harness: a bounded run of every workload under a
# mix of nemeses on a 5-node cluster, then a run of the unsafe build
# (no epoch check) that must find a forked epoch. Fails on any anomaly.
# About 6 minutes; JEPSEN_CI_TIME (default 150s) sets the mixed run's
# length. Reports land in jepsen/out/ci-<time>/.
#
# Needs root (network namespaces, iptables). Without root it skips, except
# under CI=1, where skipping would hide the step: then it fails.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	if [ -n "${CI:-}" ]; then
		echo "jepsen/ci.sh: needs root (network namespaces, iptables) and CI is set: failing" >&2
		exit 1
	fi
	echo "jepsen/ci.sh: skipped: needs root (network namespaces, iptables)"
	exit 0
fi

jepsen/install.sh
out="jepsen/out/ci-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
go build -o "$out/jepsen" ./jepsen
"$out/jepsen" -cleanup

echo "== jepsen: every workload, mixed faults, 5 nodes"
"$out/jepsen" -workload all -nemesis mix -nodes 5 -time "${JEPSEN_CI_TIME:-150s}" -quiet 3s -fault 8s -out "$out/mix"

if grep -rqs --include='*.go' --exclude-dir=jepsen "//go:build mimi_unsafe_noepochcheck" .; then
	echo "== jepsen: the unsafe build (no epoch check) must show forked epochs"
	"$out/jepsen" -workload commit-race -nemesis none -nodes 3 -time 30s -unsafe-build -expect forked-epoch -out "$out/unsafe"
else
	echo "== jepsen: the product has no mimi_unsafe_noepochcheck build tag; unsafe run skipped"
fi
echo "jepsen/ci.sh: passed; reports in $out"
