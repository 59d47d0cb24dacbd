#!/usr/bin/env bash
# Keel measured side by side with etcd, on this machine, in one run, with
# the same client (keel-bench):
#   1. etcd: a 3-member cluster (Debian's etcd-server), default durability;
#   2. Keel: a 3-member cluster (`keel cluster up`), default durability;
#   3. the ceiling: keel-ceiling, etcd's KV API served from memory with no
#      replication and no fsync.
# For every row and server it also measures CPU: the server's (user+system
# seconds of all its processes) and the client's (keel-bench's own), each
# from /proc/<pid>/stat read by keel-bench when the row's timed phase starts
# and ends (so connecting, and writing the keys that gets read, are outside
# it), divided by the requests acknowledged in the row.
# Prints Markdown tables (Keel as a ratio to etcd and a fraction of the
# ceiling; then every row and server with throughput, latency and CPU per
# request) and leaves every JSON report and the Keel plots in $OUT.
#
# This machine is shared and its speed drifts by tens of percent from one
# minute to the next, so each row runs ROUNDS times (default 3), the
# servers taking turns within a round; for each row and server the
# tables report its median round by throughput (latency and CPU from that
# same round), and list every round's throughput below them.
#
#   bench/compare.sh                 # 20,000 requests per row, 3 rounds
#   TOTAL=2000 ROUNDS=1 bench/compare.sh
#   bench/compare.sh --quick         # smoke test: 300 requests per row, 1 round, 30 s cap
#
# Every row is bounded twice: by TOTAL requests, and by ROW_TIMEOUT seconds
# (default 120; a row cut off by it is reported as missing, not measured).
#
# Each cluster's endpoints are listed leader first, and a one-connection
# row talks to the first endpoint only: `put-1` is one client at the
# leader, `put-1-at-follower` (endpoints listed follower first) one client
# at a follower, whose writes are forwarded to the leader — for etcd and
# Keel alike, so that neither row depends on which member happened to win
# the first election. Rows with several connections spread them over all
# three members either way.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--quick" ]; then
    TOTAL=${TOTAL:-300}
    ROUNDS=${ROUNDS:-1}
    ROW_TIMEOUT=${ROW_TIMEOUT:-30}
elif [ -n "${1:-}" ]; then
    echo "usage: $0 [--quick]   (environment: TOTAL, ROUNDS, ROW_TIMEOUT, OUT)" >&2
    exit 2
fi
TOTAL=${TOTAL:-20000}
ROUNDS=${ROUNDS:-3}
ROW_TIMEOUT=${ROW_TIMEOUT:-120}
OUT=${OUT:-bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
work=$(mktemp -d)
etcd_pids=()

command -v etcd >/dev/null || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
command -v etcdctl >/dev/null || { echo "etcdctl is missing: apt-get install etcd-client" >&2; exit 1; }
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

# The member processes of the local Keel cluster, from its cluster.toml.
keel_pids() {
    awk -F' = ' '$1 == "pid" { print $2 }' "$work/keel/cluster.toml"
}

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

# A cluster's endpoints, leader first (or a follower first, with
# `follower`), from the members' Maintenance.Status answers.
order_endpoints() {
    ETCDCTL_API=3 etcdctl --endpoints "$1" endpoint status -w json | python3 -c '
import json, sys
want_leader = sys.argv[1] == "leader"
members = json.load(sys.stdin)
is_leader = lambda m: m["Status"]["leader"] == m["Status"]["header"]["member_id"]
chosen = sorted(members, key=lambda m: is_leader(m) != want_leader)
print(",".join(m["Endpoint"].replace("http://", "") for m in chosen))' "$2"
}
for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$KEEL_EPS" endpoint status >/dev/null 2>&1 && break
    sleep 0.2
done
ETCD_FOLLOWER_FIRST=$(order_endpoints "$ETCD" follower)
ETCD=$(order_endpoints "$ETCD" leader)
KEEL_FOLLOWER_FIRST=$(order_endpoints "$KEEL_EPS" follower)
KEEL_EPS=$(order_endpoints "$KEEL_EPS" leader)
echo "   etcd: $ETCD; Keel: $KEEL_EPS (leaders first)"

echo "== starting the ceiling"
"$CEILING" --listen 127.0.0.1:31379 >"$work/ceiling.log" 2>&1 &
ceiling_pid=$!
CEIL=127.0.0.1:31379
sleep 0.5

rows=(
    "put-1|put --clients 1 --conns 1 --sequential-keys"
    "put-1-at-follower|put --clients 1 --conns 1 --sequential-keys"
    "put-16|put --clients 16 --conns 4 --sequential-keys"
    "put-100|put --clients 100 --conns 10 --sequential-keys"
    "put-1000|put --clients 1000 --conns 100 --sequential-keys"
    "put-100-random|put --clients 100 --conns 10"
    "get-l-100|get --clients 100 --conns 10 --consistency l"
    "get-s-100|get --clients 100 --conns 10 --consistency s"
    "txn-put-100|txn --clients 100 --conns 10"
    "mixed-10pct-100|mixed --clients 100 --conns 10 --write-fraction 0.1"
    # Last, since its leased keys stay in the store: 100 leases holding
    # 1,000 keys each. The ceiling serves no Lease API.
    "put-16-leased|put --clients 16 --conns 4 --sequential-keys --lease-keys 100000"
)
read -r -a keel_member_pids <<<"$(keel_pids | tr '\n' ' ')"
[ "${#keel_member_pids[@]}" -eq 3 ] || { echo "expected 3 Keel member pids, found: ${keel_member_pids[*]}" >&2; exit 1; }
for row in "${rows[@]}"; do
    name=${row%%|*}
    args=${row#*|}
    for round in $(seq "$ROUNDS"); do
        for server in etcd keel ceiling; do
            case $server in
                etcd) eps=$ETCD; extra=""; pids=("${etcd_pids[@]}") ;;
                keel) eps=$KEEL_EPS; extra="--plot $OUT/keel-$name.svg"; pids=("${keel_member_pids[@]}") ;;
                ceiling) eps=$CEIL; extra=""; pids=("$ceiling_pid") ;;
            esac
            if [ "$name" = put-16-leased ] && [ "$server" = ceiling ]; then
                continue
            fi
            if [ "$name" = put-1-at-follower ]; then
                case $server in
                    etcd) eps=$ETCD_FOLLOWER_FIRST ;;
                    keel) eps=$KEEL_FOLLOWER_FIRST ;;
                esac
            fi
            echo "== $name on $server, round $round of $ROUNDS"
            report="$OUT/$server-$name.round$round.json"
            # shellcheck disable=SC2086
            if ! timeout --kill-after=5 "$ROW_TIMEOUT" \
                $BENCH $args --endpoints "$eps" --total "$TOTAL" --json --no-progress $extra \
                --server-pids "$(IFS=,; echo "${pids[*]}")" >"$report"; then
                echo "   $name on $server failed or ran past ${ROW_TIMEOUT}s; reported as missing" >&2
                rm -f "$report"
            fi
        done
    done
done

python3 - "$OUT" "${rows[@]}" <<'PY'
import glob, json, os, shutil, sys
out, rows = sys.argv[1], [r.split("|")[0] for r in sys.argv[2:]]
servers = ["etcd", "keel", "ceiling"]
rounds = {}
def load(t, n):
    # A row's rounds, slowest first; the median one stands for the row.
    paths = glob.glob(f"{out}/{t}-{n}.round*.json")
    runs = sorted(((json.load(open(p)), p) for p in paths), key=lambda r: r[0]["requests_per_s"])
    rounds[(t, n)] = [r["requests_per_s"] for r, _ in runs]
    if not runs:
        return None
    report, path = runs[(len(runs) - 1) // 2]
    shutil.copyfile(path, f"{out}/{t}-{n}.json")
    report["server_us"] = report["cpu"]["server_us_per_ok"]
    report["client_us"] = report["cpu"]["client_us_per_ok"]
    return report
def ratio(a, b, fmt):
    return format(a / b, fmt) if a is not None and b else "—"
def num(x, fmt=",.0f"):
    return "—" if x is None else format(x, fmt)
data = {(t, n): load(t, n) for t in servers for n in rows}
print("| workload | etcd req/s | etcd p99 ms | Keel req/s | Keel p99 ms | ceiling req/s | Keel/etcd req/s | Keel/etcd p99 | Keel/etcd server CPU per req | Keel/ceiling |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in rows:
    e, k, c = (data[(t, n)] for t in servers)
    if e is None or k is None:
        print(f"| {n} | missing: see above | | | | | | | | |")
        continue
    ep, kp = e["latency"]["p99_us"] / 1000, k["latency"]["p99_us"] / 1000
    err = "" if not k["errors"] else f" (errors: {k['errors']})"
    crps = c["requests_per_s"] if c else None
    print(f"| {n}{err} | {e['requests_per_s']:,.0f} | {ep:.2f} | {k['requests_per_s']:,.0f} | {kp:.2f} "
          f"| {num(crps)} | {k['requests_per_s']/e['requests_per_s']:.2f}x "
          f"| {kp/ep if ep else float('nan'):.2f}x | {ratio(k['server_us'], e['server_us'], '.2f')}{'x' if e['server_us'] else ''} "
          f"| {ratio(k['requests_per_s'], crps, '.0%')} |")
print()
print("Every row and server: CPU is user+system seconds per acknowledged request, in µs;")
print("server = all of that server's processes (3 members, or the one ceiling process), client = keel-bench.")
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
print(f"Resolution: one clock tick ({tick_us / 1000:.0f} ms) over a row's requests, e.g. "
      f"{tick_us / max(1, data[('etcd', rows[0])]['ok'] if data[('etcd', rows[0])] else 1):,.1f} µs in the first row.")
print()
print("| workload | server | ok | errors | req/s | p50 ms | p99 ms | server CPU µs/req | client CPU µs/req |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for n in rows:
    for t in servers:
        r = data[(t, n)]
        if r is None:
            if not (t == "ceiling" and n == "put-16-leased"):
                print(f"| {n} | {t} | missing | | | | | | |")
            continue
        lat = r["latency"]
        print(f"| {n} | {t} | {r['ok']:,} | {sum(r['errors'].values()):,} | {r['requests_per_s']:,.0f} "
              f"| {lat['p50_us']/1000:.2f} | {lat['p99_us']/1000:.2f} "
              f"| {num(r['server_us'])} | {num(r['client_us'])} |")
print()
print("Every round's throughput (req/s, slowest first); the tables use the median round:")
print()
for n in rows:
    line = "; ".join(f"{t} " + " / ".join(f"{x:,.0f}" for x in rounds[(t, n)]) for t in servers if rounds[(t, n)])
    print(f"- {n}: {line}")
PY
echo "reports in $OUT"
