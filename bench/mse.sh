#!/usr/bin/env bash
# What message stream encryption costs in the core, alone (no sockets): RC4 throughput the
# ways the connection layer will call it (in place on slices, on uniquely held and on shared
# Bytes) and whole MSE handshakes, from core/examples/mse_throughput.rs. Rates are per CPU
# second of the process, so runs on a shared machine stay comparable; the wall-clock rate is
# printed too. For reference, OpenSSL's RC4 on the same machine (`openssl speed`, also per
# CPU second), when the openssl command and its legacy provider are there.
#
#   bench/mse.sh            # 1 GiB through each RC4 path
#   MIB=256 bench/mse.sh
set -euo pipefail

MIB=${MIB:-1024}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo run --release -q -p tessera-core --example mse_throughput -- "$MIB"
if command -v openssl >/dev/null 2>&1; then
    echo
    echo "openssl speed (RC4 in assembly, bytes per CPU second, for reference):"
    openssl speed -provider legacy -provider default -evp rc4 -seconds 2 2>/dev/null \
        | tail -2 || echo "(openssl has no RC4 here)"
fi
