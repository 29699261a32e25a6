#!/usr/bin/env bash
# Simulator throughput: swarms of N peers (default 100 1000 5000) sharing a 64 MiB torrent
# of 256 KiB pieces, virtual payload, one seeder, run to completion.
# Prints a markdown table: events, simulated seconds, wall and CPU (user) seconds, events
# per CPU second, peak memory. Per-peer request bounds are checked once per simulated second
# (--sampled-checks); every other invariant after every event.
# Usage: bench/sim.sh [N...]     Env: SEED (default 1), SIZE (default 64MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
# The `sim` profile: release with fat LTO and one codegen unit (see Cargo.toml).
cargo build --profile sim -q -p tessera-sim
SIM=${CARGO_TARGET_DIR:-target}/sim/tessera-sim
# Transparent huge pages for the simulator's heap, never given back to the OS (see
# sim/src/main.rs): fewer TLB misses, no huge page split by a purge and faulted in again.
export MIMALLOC_ALLOW_LARGE_OS_PAGES=${MIMALLOC_ALLOW_LARGE_OS_PAGES:-1}
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:--1}
SEED=${SEED:-1}
SIZE=${SIZE:-64MiB}
NS=("$@")
[ ${#NS[@]} -eq 0 ] && NS=(100 1000 5000)
mkdir -p bench/results
echo "| peers | events | inputs | sim s | wall s | CPU s | events / CPU s | peak RSS MiB | completed | trace |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in "${NS[@]}"; do
  out=bench/results/sim-$n.txt
  /usr/bin/time -f "%U %e %M" -o "$out.time" \
    "$SIM" --peers "$n" --size "$SIZE" --piece-size 256KiB --seed "$SEED" --sampled-checks --json >"$out" || true
  read -r user wall rss < <(tail -n 1 "$out.time") || true
  tail -n 1 "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
user, wall, rss = (float(x) for x in sys.argv[1:4])
print("| %d | %d | %d | %.0f | %.1f | %.1f | %.0f | %.0f | %d/%d | %s |" % (
    d["peers"], d["events"], d["inputs"], d["sim_seconds"], wall, user,
    d["events"] / max(user, 1e-9), rss / 1024, d["completed"], d["honest"], d["trace_hash"]))
' "$user" "$wall" "$rss"
done
