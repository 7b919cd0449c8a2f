#!/usr/bin/env bash
# Re-screening the user base when a sanctions list changes (issue 27): USERS prospects with
# names, birth dates and countries are written straight into a fresh SQLite database, then the
# server starts and loads the built-in OFAC snapshot, which re-screens every one of them. Prints
# how long that took and, when RATE > 0, `POST /User`'s p99 at RATE/s while it ran.
#
#   [THREADS=n] bench/rescreen.sh [USERS=100000] [RATE=500] [BIN_DIR=target/release]
#
# THREADS sets `sanctions.rescreen_threads` (default 0: one less than the CPUs).
# Needs `cargo build --release` first, and python3 (its sqlite3 module writes the users).
set -euo pipefail
cd "$(dirname "$0")/.."

users=${1:-100000}
rate=${2:-500}
bin=$(cd "${3:-target/release}" && pwd)
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
server=

start() {
    (cd "$dir" && ONBOARD_LOG__FILTER=warn exec env "$@" "$bin/onboard" serve --listen 127.0.0.1:18184 \
        >>"$dir/server.out" 2>>"$dir/server.log") &
    server=$!
    for _ in $(seq 1 300); do curl -sf http://127.0.0.1:18184/healthz >/dev/null && return; sleep 0.1; done
    echo "the server did not start" >&2
    exit 1
}
metric() { curl -s http://127.0.0.1:18184/metrics | awk -v m="$1" '$1 == m {print $2}'; }

# The schema and the sandbox partner, without a list (so that loading one later re-screens).
start ONBOARD_SANCTIONS__BUILTIN_SNAPSHOT=false
kill $server; wait $server 2>/dev/null || true

python3 - "$dir/onboard.db" "$users" <<'EOF'
import random, sqlite3, sys, time, uuid
db, n = sys.argv[1], int(sys.argv[2])
random.seed(27)
# Common given and family names of the places Onboard's partners serve, and a few that the SDN
# list holds many of (the expensive queries).
first = ["James", "Maria", "Jose", "Juan", "Ana", "Luis", "Carlos", "Mary", "John", "Robert", "Patricia",
         "Jennifer", "Michael", "Linda", "David", "Elizabeth", "Mohammad", "Ahmed", "Ali", "Fatima", "Wei",
         "Li", "Olga", "Ivan", "Sergei", "Guadalupe", "Francisco", "Alejandro", "Sofia", "Valentina",
         "Daniel", "Laura", "Hassan", "Omar", "Yusuf", "Kim", "Chen", "Elena", "Pedro", "Miguel"]
last = ["Garcia", "Hernandez", "Martinez", "Lopez", "Gonzalez", "Rodriguez", "Perez", "Sanchez", "Ramirez",
        "Torres", "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
        "Taylor", "Khan", "Hussein", "Ali", "Rahman", "Ivanov", "Petrov", "Wang", "Zhang", "Liu", "Nguyen",
        "Flores", "Rivera", "Gomez", "Diaz", "Cruz", "Morales", "Reyes", "Ortiz", "Gutierrez", "Chavez"]
countries = ["MX", "US", "US", "MX", "CO", "ES", "GB", "DE", "IN", "CN"]
now = int(time.time() * 1000)
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode = WAL")
rows = ((f"usr:{uuid.uuid4()}", 1, random.choice(first), random.choice(last),
         f"{random.randint(1940, 2005)}-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}",
         random.choice(countries), now) for _ in range(n))
con.executemany(
    "INSERT INTO users (public_id, partner_id, first_name, last_name, date_of_birth, country, cip_status, "
    "cip_detail, created_at) VALUES (?, ?, ?, ?, ?, ?, 'Completed', NULL, ?)", rows)
con.commit()
con.close()
EOF

started=$(date +%s.%N)
start ONBOARD_SANCTIONS__RESCREEN_THREADS="${THREADS:-0}"
bench=
if [ "$rate" != 0 ]; then
    value() { grep "$1" "$dir/server.out" | tail -1 | awk '{print $NF}'; }
    "$bin/onboard-bench" --url http://127.0.0.1:18184 --client-id "$(value "client id")" \
        --client-secret "$(value "client secret")" --connections 32 --rate "$rate" --duration 10s >"$dir/bench.out" &
    bench=$!
fi
while :; do
    done_users=$(metric sanctions_rescreened_users_total)
    [ "${done_users:-0}" -ge "$users" ] 2>/dev/null && break
    sleep 0.5
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
[ -n "$bench" ] && wait $bench
printf 'USERS %s re-screened in %.1f s (%.0f users/s) from the server start, list load included\n' \
    "$users" "$elapsed" "$(echo "$users / $elapsed" | bc -l)"
[ -n "$bench" ] && grep -E "latency|throughput" "$dir/bench.out" | sed "s/^/POST \/User at $rate\/s meanwhile: /"
exit 0
