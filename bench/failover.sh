#!/usr/bin/env bash
# Leader failover under load, and no false alarms without faults, on one
# 3-member Keel cluster with default timeouts:
#
# 1. QUIET seconds of 100 clients' puts with no fault: every leader change
#    (term change) is a false alarm — a healthy leader was deposed because
#    heartbeats or votes came late under load.
# 2. RUNS times: 100 clients put, the leader is killed with SIGKILL, and
#    the longest time without any acknowledged write is the
#    unavailability (the killed member is restarted between runs); prints
#    p50 and p99.
#
#   bench/failover.sh                  # 300 s quiet, 20 runs (needs etcdctl)
#   QUIET=60 RUNS=5 bench/failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
QUIET=${QUIET:-300}
cargo build --release -q -p keel-cli
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
KEEL=$target/release/keel
work=$(mktemp -d)
# On failure the members' logs are kept for a look.
finish() {
    local status=$?
    "$KEEL" cluster down --data-dir "$work/keel" >/dev/null 2>&1 || true
    if ((status)); then echo "members' logs kept in $work/keel" >&2; else rm -rf "$work"; fi
}
trap finish EXIT

eps=127.0.0.1:41379,127.0.0.1:41479,127.0.0.1:41579
up() { "$KEEL" cluster up --members 3 --data-dir "$work/keel" --base-port 41379 --detach >/dev/null; }
leader_pid() {
    "$KEEL" cluster status --data-dir "$work/keel" 2>/dev/null |
        awk -F'|' '$5 ~ /leader/ { if (match($4, /[0-9]+/)) print substr($4, RSTART, RLENGTH) }'
}

# The term as member 1 sees it, from its metrics port (client port + 2).
term() {
    curl -s 127.0.0.1:41381/metrics | awk '$1 == "keel_raft_term" { print $2 }'
}

# Waits (at most 120 s) until every member answers and has applied what
# member 1 had committed when the wait began, so that each run starts with
# all three members current: killing a leader while the member restarted
# in the previous run still catches up would measure a lost quorum, not a
# failover. Prints how long the wait took.
caught_up() {
    local start=$SECONDS target=""
    while ((SECONDS - start < 120)); do
        [ -n "$target" ] || target=$(curl -s 127.0.0.1:41381/metrics |
            awk '$1 == "keel_raft_commit_index" { print $2 }')
        local behind=0
        for port in 41381 41481 41581; do
            applied=$(curl -s "127.0.0.1:$port/metrics" |
                awk '$1 == "keel_raft_applied_index" { print $2 }')
            if [ -z "$target" ] || [ -z "$applied" ] || ((applied < target)); then behind=1; fi
        done
        ((behind)) || { echo "$((SECONDS - start))"; return 0; }
        sleep 0.5
    done
    echo "timeout"
    return 1
}

# At 100 clients' rate the store's history passes the default 2 GiB
# backend quota within five minutes, and the NOSPACE alarm then refuses
# every write (as etcd's does): the quiet phase runs in segments with the
# history compacted after each, and so does every run, as a production
# cluster's auto-compaction would.
command -v etcdctl >/dev/null ||
    { echo "failover.sh compacts with etcdctl (Debian's etcd-client); install it" >&2; exit 1; }
compacted=0
compact() {
    local rev
    rev=$(ETCDCTL_API=3 etcdctl --endpoints "$eps" get --limit 1 failover-compaction -w json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
    if ((rev > compacted)); then
        ETCDCTL_API=3 etcdctl --endpoints "$eps" compact "$rev" >/dev/null
        compacted=$rev
    fi
}
SEGMENT=30

up
before=$(term)
for ((done_s = 0; done_s < QUIET; done_s += SEGMENT)); do
    length=$((QUIET - done_s < SEGMENT ? QUIET - done_s : SEGMENT))
    "$KEEL" bench put --endpoints "$eps" --clients 100 --conns 10 --duration "${length}s" \
        --no-progress >"$work/quiet.txt"
    grep -E "requests:|errors:" "$work/quiet.txt" | paste -sd' ' | sed "s/^ */  ${done_s}-$((done_s + length)) s: /"
    compact
done
after=$(term)
echo "no faults, ${QUIET} s of 100 clients: term $before -> $after, $((after - before)) leader changes"

stalls=()
for run in $(seq "$RUNS"); do
    waited=$(caught_up) || { echo "run $run: a member did not catch up within 120 s" >&2; exit 1; }
    compact
    "$KEEL" bench put --endpoints "$eps" --clients 100 --conns 10 --duration 5s \
        --json --no-progress >"$work/run.json" &
    bench=$!
    sleep 2
    pid=$(leader_pid)
    [ -n "$pid" ] || { echo "run $run: no leader found" >&2; wait "$bench"; up; continue; }
    kill -9 "$pid"
    wait "$bench"
    stall=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_stall_ms"])' "$work/run.json")
    echo "run $run: all members current after ${waited} s; killed leader pid $pid; writes stalled for $stall ms"
    stalls+=("$stall")
    up
done

python3 - "${stalls[@]}" <<'PY'
import sys
s = sorted(float(x) for x in sys.argv[1:])
if not s:
    sys.exit("no run measured")
pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
print(f"failover over {len(s)} runs: p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {s[-1]:.0f} ms")
PY
