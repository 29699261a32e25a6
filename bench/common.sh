# Shared by bench/runtimes.sh and bench/encryption.sh (sourced, after `set -euo pipefail`
# and the settings): builds or finds the release binaries (BIN[mio], BIN[smol]), makes the
# work directory ($work, removed at exit unless WORK was given; new ones are named after
# $WORK_NAME), stops the seeder of the run in progress ($time_pid, $seed_pid) at exit, and
# gives the helpers the two scripts time and summarise runs with.
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
if [[ -z ${NO_BUILD:-} ]]; then
    cargo build --release -p tessera-mio -p tessera-smol
fi
declare -A BIN=([mio]="$target/release/tessera-mio" [smol]="$target/release/tessera-smol")
for b in "${BIN[@]}"; do
    [[ -x $b ]] || { echo "missing $b (cargo build --release)" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

if [[ -n ${WORK:-} ]]; then
    work=$WORK
    mkdir -p "$work"
    keep_work=1
else
    work=$(mktemp -d /tmp/${WORK_NAME}.XXXXXX)
    keep_work=
fi

# The seeder running now: /usr/bin/time's PID and the seeder's (its child).
time_pid=""
seed_pid=""
cleanup() {
    for pid in $seed_pid $time_pid; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -z $keep_work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $2 seconds for process $1 to exit; returns 1 if it is still running.
wait_gone() {
    local pid=$1 limit=$2 i
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# A field of /usr/bin/time -v output.
time_field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }
cpu_seconds() {
    awk -v u="$(time_field "$1" 'User time (seconds)')" \
        -v s="$(time_field "$1" 'System time (seconds)')" 'BEGIN { printf "%.2f", u + s }'
}
peak_mib() { awk -v k="$(time_field "$1" 'Maximum resident set size (kbytes)')" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

