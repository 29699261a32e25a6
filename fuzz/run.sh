#!/usr/bin/env bash
# Builds the fuzz targets and runs each for the given time, one after the other (one
# process, one core), then prints executions and findings per target.
#
#   fuzz/run.sh <seconds-per-target> [target ...]      (default: every target)
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags
# cargo-fuzz passes (sanitizer coverage, AddressSanitizer); no nightly is needed.
# Targets are built with debug assertions (-a), so integer overflow panics as in tests.
#
# Each target reads its seeds from fuzz/corpus/<target>/ (committed, never written to) and
# keeps what it finds in fuzz/work/corpus/<target>/ (ignored by git), so later runs resume
# from there. Crashes, timeouts and out-of-memory inputs land in fuzz/artifacts/<target>/;
# reproduce one with `RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> <file>`.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 <seconds-per-target> [target ...]" >&2
    exit 2
fi
secs=$1
shift
all=(bencode metainfo wire http_response announce extension session dht_node dht_state fast krpc magnet mse_responder udp_tracker ut_metadata ut_pex utp_packet utp_socket)
targets=("${@:-${all[@]}}")

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz build -a

logs=fuzz/work/logs
mkdir -p "$logs"
declare -A execs found
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/corpus/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | sort)
    echo "== $t: ${secs}s" >&2
    # libFuzzer exits non-zero on a finding; carry on with the other targets.
    cargo fuzz run -a "$t" "fuzz/work/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t.log" 2>&1 || true
    execs[$t]=$(awk '/stat::number_of_executed_units/ {print $2}' "$logs/$t.log" | tail -1)
    new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$t" | sort) | sed '/^$/d' || true)
    if [[ -n $new ]]; then
        found[$t]=$(echo "$new" | sed "s|^|fuzz/artifacts/$t/|" | paste -sd' ')
        status=1
    else
        found[$t]=none
    fi
done

printf '\n%-14s %14s %8s  %s\n' target executions corpus findings
for t in "${targets[@]}"; do
    n=$(ls "fuzz/work/corpus/$t" | wc -l)
    printf '%-14s %14s %8s  %s\n' "$t" "${execs[$t]:-?}" "$n" "${found[$t]}"
done
echo "(logs in $logs/)"
exit $status
