#!/usr/bin/env bash
# Simulator throughput: swarms of N peers (default 100 1000 10000) sharing a 64 MiB torrent
# of 256 KiB pieces, virtual payload, one seeder, run to completion.
# Runs the plain release build (`cargo build --release`, what a user runs) with no
# environment: the simulator sets its allocator's options itself (sim/src/main.rs).
# Every invariant is checked after every input, as in a plain run; SAMPLED=1 checks the
# per-peer request bounds once per simulated second instead (--sampled-checks).
# Prints a markdown table: events, simulated seconds, wall and CPU (user) seconds, how much
# faster than real time (simulated / wall seconds), events per CPU second, peak memory.
# Usage: bench/sim.sh [N...]     Env: SEED (default 1), SIZE (default 64MiB), SAMPLED.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tessera-sim
SIM=${CARGO_TARGET_DIR:-target}/release/tessera-sim
SEED=${SEED:-1}
SIZE=${SIZE:-64MiB}
EXTRA=()
[ "${SAMPLED:-0}" = 1 ] && EXTRA+=(--sampled-checks)
NS=("$@")
[ ${#NS[@]} -eq 0 ] && NS=(100 1000 10000)
mkdir -p bench/results
echo "| peers | events | inputs | sim s | wall s | sim s / wall s | CPU s | events / CPU s | peak RSS MiB | completed | trace |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for n in "${NS[@]}"; do
  out=bench/results/sim-$n.txt
  /usr/bin/time -f "%U %e %M" -o "$out.time" \
    "$SIM" --peers "$n" --size "$SIZE" --piece-size 256KiB --seed "$SEED" "${EXTRA[@]}" --json >"$out" || true
  read -r user wall rss < <(tail -n 1 "$out.time") || true
  tail -n 1 "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
user, wall, rss = (float(x) for x in sys.argv[1:4])
print("| %d | %d | %d | %.0f | %.1f | %.2f | %.1f | %.0f | %.0f | %d/%d | %s |" % (
    d["peers"], d["events"], d["inputs"], d["sim_seconds"], wall, d["sim_seconds"] / max(wall, 1e-9),
    user, d["events"] / max(user, 1e-9), rss / 1024, d["completed"], d["honest"], d["trace_hash"]))
' "$user" "$wall" "$rss"
done
