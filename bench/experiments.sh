#!/usr/bin/env bash
# The simulator experiments of sim/README.md, as markdown tables. Virtual payload.
# Usage: bench/experiments.sh [SEEDS...]   (default seeds: 1 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tessera-sim
SIM=target/release/tessera-sim
SEEDS=("${@:-1 2 3}")
[ $# -eq 0 ] && SEEDS=(1 2 3)
COMMON=(--peers 50 --size 16MiB --piece-size 256KiB --sampled-checks --json)
field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print(eval(sys.argv[1]))' "$1"; }

echo "### Rarest first against sequential and streaming (--sequential), the only seeder (1 MiB/s) leaving after uploading C copies"
echo
echo "| picker | C | seed | seeder left (s) | s with a piece at 1 copy after | most pieces at 0 copies | pieces lost | honest completed | median (s) | max (s) | median s to the first 10 % playable |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for copies in 1.5 2 3; do
for picker in rarest sequential streaming; do
  for s in "${SEEDS[@]}"; do
    out=$($SIM "${COMMON[@]}" --seed "$s" --picker "$picker" --seeder-leaves-after "$copies" --seeder-up 1MiB || true)
    echo "$out" | field '"| %s | '"$copies"' | %s | %s | %.0f | %s | %s | %s/%s | %s | %s | %s |" % (d["picker"], d["seed"], d["seeder_left_at"] and round(d["seeder_left_at"],1), d["one_copy_seconds"], d["max_pieces_zero_copies"], d["pieces_lost"], d["completed"], d["honest"], d["median_completion"] and round(d["median_completion"],1), d["max_completion"] and round(d["max_completion"],1), d.get("median_playable_10pct") and round(d["median_playable_10pct"],1))'
  done
done
done
echo
echo "### Tit-for-tat: 10 free riders among 50 reciprocating leechers"
echo
echo "| links | after completing | seed | leechers median (s) | free riders median (s) | leechers max (s) | free riders max (s) | free riders' share of leechers' unchoke slot-time |"
echo "|---|---|---|---|---|---|---|---|"
for variant in default equal slow; do
  if [ "$variant" = default ]; then extra=(); after=seed; links="256 KiB/s-2 MiB/s"
  elif [ "$variant" = equal ]; then extra=(--up-min 1MiB --up-max 1MiB --seeder-up 1MiB --leave-on-complete); after=leave; links="all 1 MiB/s"
  else extra=(--up-min 128KiB --up-max 512KiB --seeder-up 512KiB); after=seed; links="128-512 KiB/s (upload-bound)"; fi
  for s in "${SEEDS[@]}"; do
    { $SIM "${COMMON[@]}" --seed "$s" --free-riders 10 "${extra[@]}" || true; } | field '"| '"$links"' | '"$after"' | %s | %.1f | %.1f | %.1f | %.1f | %.1f %% |" % (d["seed"], d["classes"]["leecher"]["median"], d["classes"]["free-rider"]["median"], d["classes"]["leecher"]["max"], d["classes"]["free-rider"]["max"], 100.0 * d["unchoke_slots"].get("free-rider", 0) / max(1, sum(d["unchoke_slots"].values())))'
  done
done
echo
echo "### Endgame on and off: the tail from the 95th percentile to the last completion"
echo
echo "| links | endgame | seed | median (s) | p95 (s) | max (s) | tail max - p95 (s) | invariant violations |"
echo "|---|---|---|---|---|---|---|---|"
for variant in default wide; do
  if [ "$variant" = default ]; then extra=(); links="256 KiB/s-2 MiB/s"
  else extra=(--up-min 64KiB --up-max 4MiB); links="64 KiB/s-4 MiB/s"; fi
  for eg in on off; do
    for s in "${SEEDS[@]}"; do
      { $SIM "${COMMON[@]}" --seed "$s" --endgame "$eg" "${extra[@]}" || true; } | field '"| '"$links"' | %s | %s | %.1f | %.1f | %.1f | %.2f | %s |" % ("on" if d["endgame"] else "off", d["seed"], d["median_completion"], d["p95_completion"], d["max_completion"], d["max_completion"]-d["p95_completion"], d["invariant_violations"])'
    done
  done
done
