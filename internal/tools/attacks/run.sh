#!/usr/bin/env bash
# Replays issue 13's attacks against one mimi-hub process (on 127.0.0.71)
# and prints its Raft last index and data folder's size after each:
#   internal/tools/attacks/run.sh MIMI-HUB-BINARY
# Needs curl, jq and openssl. docs/benchmarks.md has the figures.
set -euo pipefail
bin=$(realpath "${1:?usage: run.sh MIMI-HUB-BINARY}")
cd "$(dirname "$0")/../../.."
pid=
bodies=$(mktemp -d)/attacks
go build -o "$bodies" ./internal/tools/attacks
dir=$(mktemp -d)
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir" "$(dirname "$bodies")"' EXIT
$bin -domain a.example -data "$dir/data" -federation-addr 127.0.0.71:18443 -client-addr 127.0.0.71:18444 \
	-ops-addr 127.0.0.71:18445 -raft-addr 127.0.0.71:18446 -gossip-addr 127.0.0.71:18447 -log-level error >"$dir/log" 2>&1 &
pid=$!
ca="$dir/data/dev-ca/dev-ca.pem"
for i in $(seq 100); do curl -sf http://127.0.0.71:18445/readyz >/dev/null && break; sleep 0.2; done
state() { printf 'last index %s, data %s' "$(curl -s http://127.0.0.71:18445/v1/status | jq .raft.last_index)" "$(du -sh "$dir/data/raft" | cut -f1)"; }
token=$(curl -s --cacert "$ca" https://127.0.0.71:18444/v1/register -d '{"user":"mallory","device":"d"}' | jq -r .token)
echo "start: $(state)"
# 40 application messages of 8 MiB (base64 in JSON), then 40 of 512 KiB, to a room that does not exist.
"$bodies" message $((8<<20)) mimi://a.example/r/nowhere mimi://a.example/u/mallory/d/d >"$dir/big.json"
codes=$(for i in $(seq 40); do curl -s -o /dev/null -w '%{http_code} ' --cacert "$ca" -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data-binary @"$dir/big.json" https://127.0.0.71:18444/v1/rooms/a.example/nowhere/messages; done)
echo "40 x 8 MiB client messages: $(echo $codes | tr ' ' '\n' | sort | uniq -c | tr '\n' ' '); $(state)"
"$bodies" message $((512<<10)) mimi://a.example/r/nowhere mimi://a.example/u/mallory/d/d >"$dir/half.json"
codes=$(for i in $(seq 40); do curl -s -o /dev/null -w '%{http_code} ' --cacert "$ca" -H "Authorization: Bearer $token" \
	-H 'Content-Type: application/json' --data-binary @"$dir/half.json" https://127.0.0.71:18444/v1/rooms/a.example/nowhere/messages; done)
echo "40 x 512 KiB client messages: $(echo $codes | tr ' ' '\n' | sort | uniq -c | tr '\n' ' '); $(state)"
# 60 fanout bodies of 16 MiB from a peer (a certificate of the dev CA for b.example).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/b.key" -subj /CN=b.example -out "$dir/b.csr" 2>/dev/null
printf 'subjectAltName=DNS:b.example\nextendedKeyUsage=clientAuth\n' >"$dir/ext"
openssl x509 -req -in "$dir/b.csr" -CA "$ca" -CAkey "$dir/data/dev-ca/dev-ca-key.pem" -CAcreateserial -days 1 -extfile "$dir/ext" -out "$dir/b.pem" 2>/dev/null
"$bodies" fanout $(( (16<<20) - 200 )) >"$dir/fanout.bin"
codes=$(for i in $(seq 60); do curl -s -o /dev/null -w '%{http_code} ' --cacert "$ca" --cert "$dir/b.pem" --key "$dir/b.key" -H 'Mimi-Sequence: 1' \
	--data-binary @"$dir/fanout.bin" --resolve a.example:18443:127.0.0.71 https://a.example:18443/fanout/far; done)
echo "60 x 16 MiB fanout batches for a room nobody follows: $(echo $codes | tr ' ' '\n' | sort | uniq -c | tr '\n' ' '); $(state)"
head -c $((17<<20)) /dev/zero >"$dir/fanout17.bin"
codes=$(for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code} ' --cacert "$ca" --cert "$dir/b.pem" --key "$dir/b.key" -H 'Mimi-Sequence: 1' \
	--data-binary @"$dir/fanout17.bin" --resolve a.example:18443:127.0.0.71 https://a.example:18443/fanout/far; done)
echo "20 x 17 MiB fanout bodies: $(echo $codes | tr ' ' '\n' | sort | uniq -c | tr '\n' ' '); $(state)"
