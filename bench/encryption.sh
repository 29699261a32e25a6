#!/usr/bin/env bash
# What protocol encryption costs end to end: tessera-mio seeding to tessera-mio on loopback,
# the same single-file torrent with `--encryption disable` (plain BitTorrent) on both ends
# and with `--encryption require` (an MSE handshake, then RC4 on every byte both ways).
#
#   bench/encryption.sh                     # 256 MiB, 256 KiB pieces, 5 runs per setting
#   SIZE_MIB=1024 RUNS=3 bench/encryption.sh
#
# Per run: the seeder is started and waited for until it has checked its data; then the
# leecher runs under /usr/bin/time -v (wall time from its start to its exit; user+sys CPU
# seconds; peak RSS), its output is compared with the data, and the seeder gets SIGINT and
# is waited for (its CPU seconds include checking the data at start). The settings are
# interleaved run by run, so that drift on a shared machine hits both; the load average is
# printed before and after. The table has the median of each column over the runs. Every
# wait is bounded and every process this script starts is stopped by its PID.
#
# With LT=1, libtorrent to libtorrent runs too (tests/scripts/lt_peer.py under Debian's
# /usr/bin/python3, `--encryption disabled` and `forced`, RC4 both ways), interleaved with
# the others: the reference for what RC4 costs a client written in C++ (its wall time
# includes starting the Python interpreter, about 0.3 s).
#
# Environment: SIZE_MIB (256), PIECE (256KiB), RUNS (5), RUN_TIMEOUT seconds per download
# (300), RUNTIME (mio or smol, for both ends), LT (unset), NO_BUILD=1 to use the release binaries as
# they are, WORK (a directory for the data, default: a new one under /tmp, removed at the end).
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-256}
PIECE=${PIECE:-256KiB}
RUNS=${RUNS:-5}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
RUNTIME=${RUNTIME:-mio}

WORK_NAME=tessera-encryption
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

echo "== data: $SIZE_MIB MiB, pieces of $PIECE, in $work"
mkdir -p "$work/data"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/data/blob"
"${BIN[$RUNTIME]}" -q create "$work/data/blob" --piece-size "$PIECE" --no-date -o "$work/blob.torrent"
"${BIN[$RUNTIME]}" info "$work/blob.torrent" | head -n 4

results=$work/results.tsv
: >"$results"

# One download with encryption policy $1 on both ends, run number $2.
run_once() {
    local policy=$1 n=$2 dir="$work/run-$1-$2"
    local seeder=$RUNTIME leecher=$RUNTIME
    mkdir -p "$dir"
    /usr/bin/time -v -o "$dir/seed.time" "${BIN[$seeder]}" -v seed "$work/blob.torrent" \
        --data "$work/data" --listen 127.0.0.1:0 --encryption "$policy" >"$dir/seed.out" 2>"$dir/seed.err" </dev/null &
    time_pid=$!
    # The seeder's port, once it has checked its data.
    local port="" i
    for ((i = 0; i < 1200; i++)); do
        if grep -qs "seeding (Ctrl-C to stop)" "$dir/seed.err"; then
            port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$dir/seed.err" | head -n 1 | sed 's/.*://')
            break
        fi
        kill -0 "$time_pid" 2>/dev/null || break
        sleep 0.1
    done
    # The seeder itself (time's child), to stop it with SIGINT as Ctrl-C would.
    seed_pid=$(pgrep -P "$time_pid" | head -n 1 || true)
    if [[ -z $port || -z $seed_pid ]]; then
        echo "seeder $seeder did not start:" >&2
        cat "$dir/seed.err" >&2
        exit 1
    fi

    local start end
    start=$(now)
    # timeout kills its whole process group (time and the leecher) if the run hangs.
    if ! timeout -s KILL "$RUN_TIMEOUT" /usr/bin/time -v -o "$dir/leech.time" "${BIN[$leecher]}" -q download \
        "$work/blob.torrent" -o "$dir/out" --listen 127.0.0.1:0 --peer "127.0.0.1:$port" --encryption "$policy" \
        >"$dir/leech.out" 2>"$dir/leech.err" </dev/null; then
        echo "$policy run $n: the download failed or timed out" >&2
        cat "$dir/leech.err" >&2
        exit 1
    fi
    end=$(now)
    cmp "$work/data/blob" "$dir/out/blob"

    kill -INT "$seed_pid"
    if ! wait_gone "$time_pid" 30; then
        echo "seeder $seeder did not stop on SIGINT; killing it" >&2
        kill -KILL "$seed_pid" 2>/dev/null || true
        wait_gone "$time_pid" 10 || kill -KILL "$time_pid" 2>/dev/null || true
    fi
    wait "$time_pid" || true
    time_pid=""
    seed_pid=""

    local secs mibs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    mibs=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f", m / s }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$policy" "$RUNTIME" "$n" "$mibs" \
        "$(cpu_seconds "$dir/leech.time")" "$(peak_mib "$dir/leech.time")" \
        "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")" >>"$results"
    printf '%-7s run %d: %7s MiB/s in %6s s, leecher %5s CPU s %6s MiB, seeder %5s CPU s %6s MiB\n' \
        "$policy" "$n" "$mibs" "$secs" "$(cpu_seconds "$dir/leech.time")" \
        "$(peak_mib "$dir/leech.time")" "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")"
    rm -rf "$dir/out"
}

LT_PEER=$root/tests/scripts/lt_peer.py
lt_seed_pid=""
lt_time_pid=""
cleanup_lt() {
    for pid in $lt_seed_pid $lt_time_pid; do
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap 'cleanup_lt; cleanup' EXIT

# A free TCP port on 127.0.0.1.
free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# One libtorrent to libtorrent download with lt_peer.py's encryption $1, run number $2.
run_lt() {
    local enc=$1 n=$2 dir="$work/run-lt-$1-$2" port leech_port i ready=""
    mkdir -p "$dir"
    port=$(free_port)
    leech_port=$(free_port)
    /usr/bin/time -v -o "$dir/seed.time" /usr/bin/python3 "$LT_PEER" seed --torrent "$work/blob.torrent" \
        --dir "$work/data" --port "$port" --encryption "$enc" --no-stdin \
        >"$dir/seed.out" 2>"$dir/seed.err" </dev/null &
    lt_time_pid=$!
    for ((i = 0; i < 1200; i++)); do
        if grep -qs '^SEEDING' "$dir/seed.out"; then ready=1; break; fi
        kill -0 "$lt_time_pid" 2>/dev/null || break
        sleep 0.1
    done
    lt_seed_pid=$(pgrep -P "$lt_time_pid" | head -n 1 || true)
    if [[ -z $ready || -z $lt_seed_pid ]]; then
        echo "libtorrent seeder did not start:" >&2
        cat "$dir/seed.err" >&2
        exit 1
    fi
    local start end
    start=$(now)
    if ! timeout -s KILL "$RUN_TIMEOUT" /usr/bin/time -v -o "$dir/leech.time" /usr/bin/python3 "$LT_PEER" leech \
        --torrent "$work/blob.torrent" --dir "$dir/out" --port "$leech_port" --peer "127.0.0.1:$port" \
        --encryption "$enc" --no-stdin >"$dir/leech.out" 2>"$dir/leech.err" </dev/null; then
        echo "libtorrent $enc run $n: the download failed or timed out" >&2
        cat "$dir/leech.err" >&2
        exit 1
    fi
    end=$(now)
    cmp "$work/data/blob" "$dir/out/blob"
    kill -TERM "$lt_seed_pid" 2>/dev/null || true
    if ! wait_gone "$lt_time_pid" 30; then
        kill -KILL "$lt_seed_pid" 2>/dev/null || true
        wait_gone "$lt_time_pid" 10 || kill -KILL "$lt_time_pid" 2>/dev/null || true
    fi
    wait "$lt_time_pid" || true
    lt_time_pid=""
    lt_seed_pid=""
    local secs mibs label="lt-$enc"
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    mibs=$(awk -v s="$secs" -v m="$SIZE_MIB" 'BEGIN { printf "%.1f", m / s }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" libtorrent "$n" "$mibs" \
        "$(cpu_seconds "$dir/leech.time")" "$(peak_mib "$dir/leech.time")" \
        "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")" >>"$results"
    printf '%-12s run %d: %7s MiB/s in %6s s, leecher %5s CPU s %6s MiB, seeder %5s CPU s %6s MiB\n' \
        "$label" "$n" "$mibs" "$secs" "$(cpu_seconds "$dir/leech.time")" \
        "$(peak_mib "$dir/leech.time")" "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")"
    rm -rf "$dir/out"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
policies=(disable require)
rows=(disable require)
if [[ -n ${LT:-} ]]; then
    rows+=(lt-disabled lt-forced)
fi
for ((n = 1; n <= RUNS; n++)); do
    for policy in "${policies[@]}"; do
        run_once "$policy" "$n"
    done
    if [[ -n ${LT:-} ]]; then
        run_lt disabled "$n"
        run_lt forced "$n"
    fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "Medians over $RUNS runs; $SIZE_MIB MiB, $PIECE pieces, loopback, tessera-$RUNTIME on both ends. Seeder CPU includes checking the data."
echo
echo "| setting | MiB/s | leecher CPU s | leecher peak RSS MiB | seeder CPU s | seeder peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for policy in "${rows[@]}"; do
    col() { awk -F'\t' -v p="$policy" -v c="$1" '$1 == p { print $c }' "$results" | median; }
    echo "| $policy | $(col 4) | $(col 5) | $(col 6) | $(col 7) | $(col 8) |"
done
