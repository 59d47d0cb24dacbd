#!/usr/bin/env bash
# Where one client's put goes, on a local 3-member Keel cluster: N puts of
# one client connected to the leader, then N connected to a follower (the
# difference is the forwarding hop), with every member's fsync count and
# mean fsync time over each phase, from its /metrics.
#
#   bench/one-put.sh          # N=3000 puts per phase
#   KEEL=path/to/keel N=500 bench/one-put.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KEEL:-}" ]; then
    cargo build --release -q -p keel-cli
    KEEL=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/keel
fi
N=${N:-3000}
work=$(mktemp -d)
trap '"$KEEL" cluster down --data-dir "$work/keel" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$KEEL" cluster up --members 3 --data-dir "$work/keel" --base-port 52379 --detach >/dev/null
sleep 1
fsync() { # port -> "sum count"
  curl -s "127.0.0.1:$1/metrics" | awk '$1=="keel_log_fsync_duration_seconds_sum"{s=$2} $1=="keel_log_fsync_duration_seconds_count"{c=$2} END{print s, c}'
}
role() { curl -s "127.0.0.1:$1/metrics" | awk '$1 ~ /^keel_raft_role/ && $2==1 {print $1}' | grep -o 'role="[a-z-]*"' ; }
declare -A roles
for i in 0 1 2; do p=$((52381+100*i)); roles[$i]=$(role $p); echo "member $i: ${roles[$i]}"; done
leader=""; follower=""
for i in 0 1 2; do if [[ ${roles[$i]} == *leader* ]]; then leader=$i; else follower=$i; fi; done
for target in leader follower; do
  i=${!target}; ep=127.0.0.1:$((52379+100*i))
  declare -A before
  for j in 0 1 2; do before[$j]=$(fsync $((52381+100*j))); done
  "$KEEL" bench put --endpoints "$ep" --clients 1 --conns 1 --total "$N" --no-progress | grep -E "requests:|latency"
  for j in 0 1 2; do
    read -r s0 c0 <<<"${before[$j]}"; read -r s1 c1 <<<"$(fsync $((52381+100*j)))"
    python3 -c "import sys; s0,c0,s1,c1=map(float,sys.argv[1:5]); print(f'  member $j (${roles[$j]}): {c1-c0:.0f} fsyncs, mean {(s1-s0)/max(1,c1-c0)*1e3:.3f} ms')" $s0 $c0 $s1 $c1
  done
  echo "  ^ client at the $target (member $i)"
done
