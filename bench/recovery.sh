#!/usr/bin/env bash
# Restart and recovery time with a large log, and memory per member after
# many keys. Two measurements:
#   1. one member, snapshots off, LOG_MIB of log written (64 KiB puts); the
#      member is killed with SIGKILL and restarted; the time until it
#      answers a linearizable get is the recovery time;
#   2. a 3-member cluster takes KEYS distinct 256-byte keys; each member's
#      resident memory (VmRSS) is read from /proc.
#
#   bench/recovery.sh                      # 1 GiB of log, 1M keys
#   LOG_MIB=128 KEYS=100000 bench/recovery.sh
#   SKIP_RECOVERY=1 bench/recovery.sh      # only the memory measurement
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_MIB=${LOG_MIB:-1024}
KEYS=${KEYS:-1000000}
cargo build --release -q -p keel-cli
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
KEEL=$target/release/keel
work=$(mktemp -d)
member=""
cleanup() {
    [ -n "$member" ] && kill -9 "$member" 2>/dev/null || true
    "$KEEL" cluster down --data-dir "$work/cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

serve() {
    "$KEEL" serve --name r1 --data-dir "$work/r1" \
        --listen-client-urls http://127.0.0.1:43379 --listen-peer-urls http://127.0.0.1:43380 \
        --initial-cluster r1=http://127.0.0.1:43380 --snapshot-count 100000000 \
        >>"$work/r1.log" 2>&1 &
    member=$!
}
wait_ready() {
    for _ in $(seq 6000); do
        "$KEEL" get probe --endpoints 127.0.0.1:43379 >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "member did not come back" >&2
    return 1
}

if [ -z "${SKIP_RECOVERY:-}" ]; then
echo "== writing ${LOG_MIB} MiB of log"
serve
wait_ready
"$KEEL" bench put --endpoints 127.0.0.1:43379 --clients 16 --val-size 65536 \
    --total $((LOG_MIB * 16)) --no-progress >/dev/null
log_bytes=$(du -sb "$work/r1/raft" | cut -f1)
kill -9 "$member"
wait "$member" 2>/dev/null || true
started=$(date +%s.%N)
serve
wait_ready
recovered=$(date +%s.%N)
python3 -c "import sys; b, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'recovery: {b / 2**20:.0f} MiB of raft data on disk, killed with SIGKILL, serving again after {t:.2f} s ({b / 2**20 / t:.0f} MiB/s)')" "$log_bytes" "$started" "$recovered"
kill "$member"; wait "$member" 2>/dev/null || true; member=""
fi

echo "== ${KEYS} keys into a 3-member cluster"
"$KEEL" cluster up --members 3 --data-dir "$work/cluster" --base-port 44379 --detach >/dev/null
"$KEEL" bench put --endpoints 127.0.0.1:44379,127.0.0.1:44479,127.0.0.1:44579 --clients 100 --conns 10 \
    --total "$KEYS" --key-space "$KEYS" --sequential-keys --no-progress
for pid in $(python3 -c "import tomllib, sys; print(' '.join(str(m['pid']) for m in tomllib.load(open(sys.argv[1], 'rb'))['member'] if m.get('pid')))" "$work/cluster/cluster.toml"); do
    rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
    echo "member pid $pid: resident memory $((rss / 1024)) MiB after ${KEYS} keys"
done
