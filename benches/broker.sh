#!/usr/bin/env bash
# A real Kafka-protocol broker for benchmarks: tansu on loopback with SQLite storage.
#
# Installs tansu from crates.io if it is missing (15-20 minutes on a fresh 2-core machine),
# starts it with its data in a temporary directory, runs the given command with
# REWIND_BROKERS set to the broker's address, and stops the broker afterwards.
#
#   benches/broker.sh sh -c 'cargo run --release -- bench ingest --brokers $REWIND_BROKERS --rate 20000'
#
# SQLite storage, because tansu's in-memory storage reports one offset per record batch as
# the high watermark and cannot resume mid-batch. TANSU_PORT picks the port (default 19092).
# To compare rewind's consumer with a plain one on a topic filled by `rewind produce`, run
# connectors/examples/plain_consume.rs inside it (BENCHMARKS.md, "Kafka: the real broker").
set -euo pipefail

if [ $# -eq 0 ]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "broker.sh: installing tansu from crates.io (takes a while on a fresh machine)" >&2
    cargo install tansu --features libsql --locked
fi
tansu=$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")

port=${TANSU_PORT:-19092}
data=$(mktemp -d)
url="tcp://127.0.0.1:$port"
# tansu reads the path of a sqlite:// URL relative to its working directory.
(cd "$data" && exec "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine sqlite://tansu.db >"$data/tansu.log" 2>&1) &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data"' EXIT

for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    if ! kill -0 $broker 2>/dev/null; then
        echo "broker.sh: tansu exited:" >&2
        cat "$data/tansu.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "broker.sh: tansu on 127.0.0.1:$port (SQLite in $data)" >&2
REWIND_BROKERS="127.0.0.1:$port" "$@"
