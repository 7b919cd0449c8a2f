#!/usr/bin/env bash
# Sign-ups beside `POST /User` (issue 27): one round for a build, on a fresh SQLite database.
# `POST /User` 1,000/s open loop on 32 connections alone (the idle p99), sign-ups alone (16
# connections, 10 s), then sign-ups again with the same `POST /User` load started 3 s into them.
# Prints one line, and the beside run's full report (its stall windows and host steal) on stderr.
#
#   bench/signups.sh [BIN_DIR=target/release]
#
# Needs `cargo build --release` first. BIN_DIR may point at another build's binaries (a
# baseline); run two builds' rounds alternately to compare them in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(cd "${1:-target/release}" && pwd)
dir=$(mktemp -d)
out=$dir/server.out
(cd "$dir" && ONBOARD_SIGNUP__PER_IP_PER_MINUTE=100000000 ONBOARD_MAIL__URL=log ONBOARD_LOG__FILTER=warn \
    exec "$bin/onboard" serve --listen 127.0.0.1:18183 >"$out" 2>"$dir/server.log") &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do grep -q "client secret" "$out" 2>/dev/null && break; sleep 0.2; done
value() { grep "$1" "$out" | head -1 | awk '{print $NF}'; }
user=(--url http://127.0.0.1:18183 --client-id "$(value "client id")" --client-secret "$(value "client secret")"
    --connections 32 --rate 1000 --duration 10s)
signup=(--url http://127.0.0.1:18183 --api-key "$(value "API key")" --route signup --connections 16 --no-ceiling)
p99() { awk '/latency ms/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1)}' "$1"; }
rate() { awk '/throughput/ {print $2}' "$1"; }

"$bin/onboard-bench" "${user[@]}" >"$dir/idle.out"
"$bin/onboard-bench" "${signup[@]}" --duration 10s >"$dir/alone.out"
"$bin/onboard-bench" "${signup[@]}" --duration 22s --warmup 1s >"$dir/signups.out" &
signups=$!
sleep 3
"$bin/onboard-bench" "${user[@]}" >"$dir/beside.out"
wait $signups
cat "$dir/beside.out" >&2
printf 'POST /User p99 idle %s ms, beside sign-ups %s ms; sign-ups alone %s/s, beside POST /User %s/s\n' \
    "$(p99 "$dir/idle.out")" "$(p99 "$dir/beside.out")" "$(rate "$dir/alone.out")" "$(rate "$dir/signups.out")"
