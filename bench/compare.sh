#!/usr/bin/env bash
# Keel measured side by side with etcd, on this machine, in one run, with
# the same client (keel-bench):
#   1. etcd: a 3-member cluster (Debian's etcd-server), default durability;
#   2. Keel: a 3-member cluster (`keel cluster up`), default durability;
#   3. the ceiling: keel-ceiling, etcd's KV API served from memory with no
#      replication and no fsync.
# Prints a Markdown table (Keel as a ratio to etcd and a fraction of the
# ceiling) and leaves every JSON report and the Keel plots in $OUT.
#
#   bench/compare.sh                 # 20,000 requests per row
#   TOTAL=2000 bench/compare.sh      # a quick run
set -euo pipefail
cd "$(dirname "$0")/.."

TOTAL=${TOTAL:-20000}
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d)
etcd_pids=()

command -v etcd >/dev/null || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
cargo build --release -q -p keel-cli -p keel-bench
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
KEEL=$target/release/keel
BENCH="$KEEL bench"
CEILING=$target/release/keel-ceiling

cleanup() {
    for pid in "${etcd_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "${ceiling_pid:-}" ] && kill "$ceiling_pid" 2>/dev/null || true
    "$KEEL" cluster down --data-dir "$work/keel" >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== starting etcd (3 members)"
cluster=""
for i in 1 2 3; do cluster+="e$i=http://127.0.0.1:1${i}380,"; done
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd-$i" \
        --listen-client-urls "http://127.0.0.1:1${i}379" \
        --advertise-client-urls "http://127.0.0.1:1${i}379" \
        --listen-peer-urls "http://127.0.0.1:1${i}380" \
        --initial-advertise-peer-urls "http://127.0.0.1:1${i}380" \
        --initial-cluster "${cluster%,}" --initial-cluster-state new \
        --log-level error >"$work/etcd-$i.log" 2>&1 &
    etcd_pids+=($!)
done
ETCD=127.0.0.1:11379,127.0.0.1:12379,127.0.0.1:13379
for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
done

echo "== starting Keel (3 members)"
"$KEEL" cluster up --members 3 --data-dir "$work/keel" --base-port 21379 --detach >/dev/null
KEEL_EPS=127.0.0.1:21379,127.0.0.1:21479,127.0.0.1:21579

echo "== starting the ceiling"
"$CEILING" --listen 127.0.0.1:31379 >"$work/ceiling.log" 2>&1 &
ceiling_pid=$!
CEIL=127.0.0.1:31379
sleep 0.5

rows=(
    "put-1|put --clients 1 --conns 1 --sequential-keys"
    "put-16|put --clients 16 --conns 4 --sequential-keys"
    "put-100|put --clients 100 --conns 10 --sequential-keys"
    "put-1000|put --clients 1000 --conns 100 --sequential-keys"
    "put-100-random|put --clients 100 --conns 10"
    "get-l-100|get --clients 100 --conns 10 --consistency l"
    "get-s-100|get --clients 100 --conns 10 --consistency s"
    "txn-put-100|txn --clients 100 --conns 10"
    "mixed-10pct-100|mixed --clients 100 --conns 10 --write-fraction 0.1"
)
for row in "${rows[@]}"; do
    name=${row%%|*}
    args=${row#*|}
    for server in etcd keel ceiling; do
        case $server in
            etcd) eps=$ETCD; extra="" ;;
            keel) eps=$KEEL_EPS; extra="--plot $OUT/keel-$name.svg" ;;
            ceiling) eps=$CEIL; extra="" ;;
        esac
        echo "== $name on $server"
        # shellcheck disable=SC2086
        $BENCH $args --endpoints "$eps" --total "$TOTAL" --json --no-progress $extra \
            >"$OUT/$server-$name.json"
    done
done

python3 - "$OUT" "${rows[@]}" <<'PY'
import json, sys
out, rows = sys.argv[1], [r.split("|")[0] for r in sys.argv[2:]]
def load(t, n):
    return json.load(open(f"{out}/{t}-{n}.json"))
print("| workload | etcd req/s | etcd p99 ms | Keel req/s | Keel p99 ms | ceiling req/s | Keel/etcd req/s | Keel/etcd p99 | Keel/ceiling |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in rows:
    e, k, c = load("etcd", n), load("keel", n), load("ceiling", n)
    ep, kp = e["latency"]["p99_us"] / 1000, k["latency"]["p99_us"] / 1000
    err = "" if not k["errors"] else f" (errors: {k['errors']})"
    print(f"| {n}{err} | {e['requests_per_s']:,.0f} | {ep:.2f} | {k['requests_per_s']:,.0f} | {kp:.2f} "
          f"| {c['requests_per_s']:,.0f} | {k['requests_per_s']/e['requests_per_s']:.2f}x "
          f"| {kp/ep if ep else float('nan'):.2f}x | {k['requests_per_s']/c['requests_per_s']:.0%} |")
PY
echo "reports in $OUT"
