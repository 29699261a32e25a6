#!/usr/bin/env bash
# tessera-smol against tessera-mio on loopback: one seeder, one leecher, one single-file
# torrent made with `create`, every seeder/leecher pairing of the two runtimes.
#
#   bench/runtimes.sh                 # 1 GiB, 256 KiB pieces, 3 runs per pairing
#   SIZE_MIB=256 RUNS=1 bench/runtimes.sh
#
# Per run: the seeder is started and waited for until it has checked its data; then the
# leecher runs under /usr/bin/time -v (wall time from its start to its exit: process start,
# connect and the final writes included; user+sys CPU seconds; peak RSS), its output is
# compared with the data, and the seeder gets SIGINT (a clean stop) and is waited for, its
# own CPU seconds and peak RSS also from /usr/bin/time -v (they include checking the data at
# start). Pairings are interleaved run by run, so that drift on a shared machine hits them all.
# The table has the median of each column over the runs. Every wait is bounded and every
# process this script starts is stopped by its PID.
#
# Environment: SIZE_MIB (1024), PIECE (256KiB), RUNS (3), RUN_TIMEOUT seconds per download
# (300), NO_BUILD=1 to use the release binaries as they are, WORK (a directory for the data,
# default: a new one under /tmp, removed at the end).
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
PIECE=${PIECE:-256KiB}
RUNS=${RUNS:-3}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}

WORK_NAME=tessera-runtimes
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"

echo "== data: $SIZE_MIB MiB, pieces of $PIECE, in $work"
mkdir -p "$work/data"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/data/blob"
"${BIN[mio]}" -q create "$work/data/blob" --piece-size "$PIECE" --no-date -o "$work/blob.torrent"
# Both runtimes make the same torrent from the same data.
"${BIN[smol]}" -q create "$work/data/blob" --piece-size "$PIECE" --no-date -o "$work/blob-smol.torrent"
cmp "$work/blob.torrent" "$work/blob-smol.torrent"
"${BIN[smol]}" info "$work/blob.torrent" | head -n 4

results=$work/results.tsv
: >"$results"

# One download: seeder runtime $1, leecher runtime $2, run number $3.
run_once() {
    local seeder=$1 leecher=$2 n=$3 dir="$work/run-$1-$2-$3"
    mkdir -p "$dir"
    /usr/bin/time -v -o "$dir/seed.time" "${BIN[$seeder]}" -v seed "$work/blob.torrent" \
        --data "$work/data" --listen 127.0.0.1:0 >"$dir/seed.out" 2>"$dir/seed.err" </dev/null &
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
        "$work/blob.torrent" -o "$dir/out" --listen 127.0.0.1:0 --peer "127.0.0.1:$port" \
        >"$dir/leech.out" 2>"$dir/leech.err" </dev/null; then
        echo "$seeder -> $leecher run $n: the download failed or timed out" >&2
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$seeder" "$leecher" "$n" "$mibs" \
        "$(cpu_seconds "$dir/leech.time")" "$(peak_mib "$dir/leech.time")" \
        "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")" >>"$results"
    printf '%-5s -> %-5s run %d: %7s MiB/s in %6s s, leecher %5s CPU s %6s MiB, seeder %5s CPU s %6s MiB\n' \
        "$seeder" "$leecher" "$n" "$mibs" "$secs" "$(cpu_seconds "$dir/leech.time")" \
        "$(peak_mib "$dir/leech.time")" "$(cpu_seconds "$dir/seed.time")" "$(peak_mib "$dir/seed.time")"
    rm -rf "$dir/out"
}

pairs=("mio mio" "smol smol" "mio smol" "smol mio")
for ((n = 1; n <= RUNS; n++)); do
    for pair in "${pairs[@]}"; do
        # shellcheck disable=SC2086
        run_once $pair "$n"
    done
done

echo
echo "Medians over $RUNS runs; $SIZE_MIB MiB, $PIECE pieces, loopback. Seeder CPU includes checking the data."
echo
echo "| seeder → leecher | MiB/s | leecher CPU s | leecher peak RSS MiB | seeder CPU s | seeder peak RSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for pair in "${pairs[@]}"; do
    read -r s l <<<"$pair"
    col() { awk -F'\t' -v s="$s" -v l="$l" -v c="$1" '$1 == s && $2 == l { print $c }' "$results" | median; }
    echo "| $s → $l | $(col 4) | $(col 5) | $(col 6) | $(col 7) | $(col 8) |"
done
