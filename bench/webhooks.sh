#!/usr/bin/env bash
# Webhook delivery benchmark (issue 23): `POST /User` open loop at RATE on a fresh SQLite
# database, once with no endpoint (the idle p99) and once with an endpoint subscribed to every
# event at a receiver inside the load generator (each new user is one `user.created` delivery),
# alternating, ROUNDS times. Prints one line per run: the route's rate and p99, the deliveries per
# second while the load ran and how long the backlog took to drain after it.
#
#   bench/webhooks.sh [RATE=2000] [SECONDS=20] [ROUNDS=2] [BIN_DIR=target/release]
#
# Needs `cargo build --release` first. BIN_DIR may point at another build's binaries (a
# baseline), so that two builds can be compared in one sitting.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=${1:-2000}
seconds=${2:-20}
rounds=${3:-2}
bin=$(cd "${4:-target/release}" && pwd)

run() {
    local webhooks=$1 dir out
    dir=$(mktemp -d)
    out=$dir/server.out
    (cd "$dir" && ONBOARD_WEBHOOKS__ALLOW_LOOPBACK=true exec "$bin/onboard" serve --listen 127.0.0.1:18182 \
        >"$out" 2>"$dir/server.log") &
    local server=$!
    for _ in $(seq 1 100); do grep -q "client secret" "$out" 2>/dev/null && break; sleep 0.2; done
    value() { grep "$1" "$out" | head -1 | awk '{print $NF}'; }
    local args=(--url http://127.0.0.1:18182 --client-id "$(value "client id")" --client-secret "$(value "client secret")"
        --api-key "$(value "API key")" --connections 64 --rate "$rate" --duration "${seconds}s" --warmup 2s
        --server-pid $server)
    [ "$webhooks" = yes ] && args+=(--webhooks)
    "$bin/onboard-bench" "${args[@]}" >"$dir/bench.out"
    kill $server; wait $server 2>/dev/null || true
    local p99 ok deliveries
    ok=$(awk '/throughput/ {print $2}' "$dir/bench.out")
    p99=$(awk '/latency ms/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1)}' "$dir/bench.out")
    deliveries=$(grep -o 'webhooks .*' "$dir/bench.out" || echo "webhooks -")
    printf '%-9s POST /User %s/s p99 %s ms   %s\n' "$webhooks" "$ok" "$p99" "$deliveries"
    rm -rf "$dir"
}

for _ in $(seq 1 "$rounds"); do
    run no
    run yes
done
