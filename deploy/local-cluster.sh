#!/bin/sh
# local-cluster.sh: run a provider as a 3-node cluster on one machine.
#
#   deploy/local-cluster.sh start [DIR]   build mimi-hub, start nodes n1-n3
#   deploy/local-cluster.sh status [DIR]  cluster status from node 1
#   deploy/local-cluster.sh stop [DIR]    SIGTERM every node, wait
#
# Node i listens on 127.0.0.i (federation :9443, client API :9444, ops
# :9445, Raft :9446, gossip :9447); they share one development CA folder,
# so they trust each other and share the gossip key, and one admin token
# for their operations listeners (DIR/admin-token, made on first start:
# mimictl -admin-token-file DIR/admin-token). Data and logs go to DIR
# (default ./mimi-cluster). Linux routes all of 127.0.0.0/8 to lo.
set -eu
cmd=${1:-start}
dir=${2:-mimi-cluster}
domain=${MIMI_DOMAIN:-a.example}
root=$(cd "$(dirname "$0")/.." && pwd)

start() {
	mkdir -p "$dir"
	(cd "$root" && go build -o "$dir/mimi-hub" ./cmd/mimi-hub)
	for i in 1 2 3; do
		if [ -f "$dir/n$i.pid" ] && kill -0 "$(cat "$dir/n$i.pid")" 2>/dev/null; then
			echo "n$i is already running (pid $(cat "$dir/n$i.pid"))"
			continue
		fi
		"$dir/mimi-hub" -domain "$domain" -node-id "n$i" -data "$dir/n$i" -dev-ca-dir "$dir/ca" \
			-federation-addr "127.0.0.$i:9443" -client-addr "127.0.0.$i:9444" -ops-addr "127.0.0.$i:9445" \
			-raft-addr "127.0.0.$i:9446" -gossip-addr "127.0.0.$i:9447" -admin-token-file "$dir/admin-token" \
			-join 127.0.0.1:9447,127.0.0.2:9447,127.0.0.3:9447 -bootstrap-expect 3 \
			>>"$dir/n$i.log" 2>&1 &
		echo $! >"$dir/n$i.pid"
		echo "started n$i (pid $!, log $dir/n$i.log)"
	done
	for _ in $(seq 1 60); do
		ready=0
		for i in 1 2 3; do
			curl -fs "http://127.0.0.$i:9445/readyz" >/dev/null 2>&1 && ready=$((ready + 1))
		done
		if [ "$ready" = 3 ]; then
			echo "all three nodes are ready; client API at https://127.0.0.{1,2,3}:9444, CA $dir/ca/dev-ca.pem"
			return 0
		fi
		sleep 1
	done
	echo "the nodes did not become ready; see $dir/n*.log" >&2
	return 1
}

stop() {
	for i in 1 2 3; do
		[ -f "$dir/n$i.pid" ] || continue
		pid=$(cat "$dir/n$i.pid")
		if kill -TERM "$pid" 2>/dev/null; then
			while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
			echo "stopped n$i"
		fi
		rm -f "$dir/n$i.pid"
	done
}

case "$cmd" in
start) start ;;
stop) stop ;;
status) curl -fs -H "Authorization: Bearer $(cat "$dir/admin-token")" http://127.0.0.1:9445/v1/cluster/status ;;
*)
	echo "usage: $0 start|status|stop [DIR]" >&2
	exit 2
	;;
esac
