#!/usr/bin/env bash
# The DHT in the simulator: `tessera-sim dht` with N nodes (default 1000 10000) and
# LOOKUPS get_peers lookups, without churn and with 20 % churn. Prints a markdown table:
# lookup success, hops, lookup seconds, queries per lookup, events, wall and CPU (user +
# sys) seconds, peak memory, trace hash.
# Every node's invariants are checked after every event that touches it.
# Usage: bench/dht.sh [N...]     Env: SEED (default 1), LOOKUPS (default 1000),
#                                CHURN (default "0 0.2").
set -euo pipefail
cd "$(dirname "$0")/.."
# The `sim` profile: release with fat LTO and one codegen unit (see Cargo.toml).
cargo build --profile sim -q -p tessera-sim
SIM=${CARGO_TARGET_DIR:-target}/sim/tessera-sim
export MIMALLOC_ALLOW_LARGE_OS_PAGES=${MIMALLOC_ALLOW_LARGE_OS_PAGES:-1}
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:--1}
SEED=${SEED:-1}
LOOKUPS=${LOOKUPS:-1000}
read -r -a CHURNS <<<"${CHURN:-0 0.2}"
NS=("$@")
[ ${#NS[@]} -eq 0 ] && NS=(1000 10000)
mkdir -p bench/results
echo "| nodes | churn | success | median hops | p95 hops | median lookup s | p95 lookup s | queries / lookup | events | wall s | CPU s | peak RSS MiB | trace |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in "${NS[@]}"; do
  for churn in "${CHURNS[@]}"; do
    out=bench/results/dht-$n-$churn.txt
    /usr/bin/time -f "%U %S %e %M" -o "$out.time" \
      "$SIM" dht --nodes "$n" --lookups "$LOOKUPS" --churn "$churn" --seed "$SEED" --json >"$out" || true
    read -r user sys wall rss < <(tail -n 1 "$out.time") || true
    tail -n 1 "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
user, sys_, wall, rss = (float(x) for x in sys.argv[1:5])
f = lambda v: "-" if v is None else "%.2f" % v
print("| %d | %.0f %% | %.1f %% | %s | %s | %s | %s | %s | %d | %.1f | %.1f | %.0f | %s |" % (
    d["nodes"], d["churn"] * 100, d["lookup_success_rate"] * 100, f(d["median_hops"]),
    f(d["p95_hops"]), f(d["median_lookup_seconds"]), f(d["p95_lookup_seconds"]),
    f(d["queries_per_lookup"]), d["events"], wall, user + sys_, rss / 1024, d["trace_hash"]))
' "$user" "$sys" "$wall" "$rss"
  done
done
