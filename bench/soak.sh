#!/usr/bin/env bash
# Soak benchmark (issue 28): a release server on a fresh SQLite database under mixed load for a
# long time — POST /User at half its measured closed-loop rate, seed 003 sign-ups and seed 002
# registrations beside it — in consecutive chunks, so that each chunk's p99 can be compared with
# the first, while a sampler records the server's resident memory and open file descriptors.
#
#   bench/soak.sh [TOTAL_MINUTES=30] [CHUNK_MINUTES=5] [USER_RATE=7000]
#
# Prints one line per chunk (p99 of each route, RSS, descriptors) and leaves the raw outputs in
# $OUT (default: a temporary directory). Needs `cargo build --release` first.
set -euo pipefail
cd "$(dirname "$0")/.."

total=${1:-30}
chunk=${2:-5}
user_rate=${3:-7000}
bin=$PWD/target/release
out=${OUT:-$(mktemp -d)}
dir=$(mktemp -d)

# Sign-ups need room in the per-IP limit; codes go to the log transport (sandbox partner).
# The built-in OFAC snapshot screens the registrations, as in production.
(cd "$dir" && ONBOARD_SIGNUP__PER_IP_PER_MINUTE=100000000 ONBOARD_MAIL__URL=log \
    exec "$bin/onboard" serve --listen 127.0.0.1:18181 >"$out/server.out" 2>"$out/server.log") &
server=$!
trap 'kill $server 2>/dev/null || true; kill $sampler 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "client secret" "$out/server.out" 2>/dev/null && break; sleep 0.2; done
value() { grep "$1" "$out/server.out" | head -1 | awk '{print $NF}'; }
client_id=$(value "client id"); secret=$(value "client secret"); api_key=$(value "API key")
url=http://127.0.0.1:18181

# RSS (kB) and open descriptors every 10 s, with seconds since the start.
start=$(date +%s)
(while kill -0 $server 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
    fds=$(ls /proc/$server/fd | wc -l)
    echo "$(( $(date +%s) - start )) $rss $fds"
    sleep 10
done) >"$out/samples" &
sampler=$!

p99() { awk '/latency ms/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1)}' "$1"; }
rate() { awk '/throughput/ {print $2}' "$1"; }
printf '%-6s %-22s %-22s %-22s %-10s %s\n' chunk "POST /User ok/s p99" "sign-up ok/s p99" "register-v2 ok/s p99" "RSS kB" "fds"
for i in $(seq 1 $(( total / chunk ))); do
    common=(--url "$url" --duration "${chunk}m" --warmup 1s)
    "$bin/onboard-bench" "${common[@]}" --client-id "$client_id" --client-secret "$secret" \
        --connections 64 --rate "$user_rate" --server-pid $server >"$out/user.$i" &
    a=$!
    "$bin/onboard-bench" "${common[@]}" --route signup --api-key "$api_key" --connections 4 --rate 5 \
        --no-ceiling >"$out/signup.$i" &
    b=$!
    "$bin/onboard-bench" "${common[@]}" --route register-v2 --api-key "$api_key" --connections 16 \
        --rate 50 >"$out/register.$i" &
    c=$!
    wait $a $b $c
    read -r _ rss fds < <(tail -1 "$out/samples")
    printf '%-6s %-22s %-22s %-22s %-10s %s\n' "$i" "$(rate "$out/user.$i") $(p99 "$out/user.$i")" \
        "$(rate "$out/signup.$i") $(p99 "$out/signup.$i")" "$(rate "$out/register.$i") $(p99 "$out/register.$i")" "$rss" "$fds"
done
echo "raw outputs and samples (seconds, RSS kB, descriptors) in $out"
