#!/bin/sh
# The simulator's sweep: 10,000 seeds, each a random scenario (swarm size, torrent and piece
# sizes, bandwidths, latencies, faults, adversaries, policies drawn from the seed), over as
# many processes as there are cores. Stops at the first failing seed and prints the command
# that replays it; KEEP_GOING=1 runs every seed and lists the failing ones.
#
#   bench/sweep.sh [SEEDS] [FROM]
set -eu
cd "$(dirname "$0")/.."
seeds=${1:-10000}
from=${2:-1}
jobs=$(nproc 2>/dev/null || echo 2)
cargo build --release -p tessera-sim
extra=""
[ "${KEEP_GOING:-0}" = 1 ] && extra="--keep-going"
start=$(date +%s)
status=0
target/release/tessera-sim sweep --seeds "$seeds" --from "$from" --jobs "$jobs" $extra || status=$?
echo "sweep: $seeds seeds from $from on $jobs processes in $(( $(date +%s) - start )) s"
exit $status
