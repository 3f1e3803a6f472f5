#!/usr/bin/env bash
# The scaling tables of BENCHMARKS.md, from `rewind bench ingest --json` runs:
#
#   benches/scaling.sh [viewers|workers|memory|all] [path/to/rewind]
#
# - viewers: committed events/s and peak RSS at --max for 10k, 100k and 1M viewers;
# - workers: the same for 1 and 2 timely workers (100k viewers);
# - memory:  RSS against events consumed over a long open-loop run (5 min at 100k/s, 1M
#            viewers), to show whether memory levels off.
#
# Each run's JSON (with per-second samples) is kept in $OUT (default ./scaling-out). Needs
# python3 to turn the JSON into table rows. DURATION and WARMUP override the run lengths.
set -euo pipefail

what=${1:-all}
rewind=${2:-target/release/rewind}
out=${OUT:-scaling-out}
duration=${DURATION:-40s}
warmup=${WARMUP:-10s}
mkdir -p "$out"

run() {
    local name=$1
    shift
    echo "scaling.sh: $name: rewind bench ingest $*" >&2
    "$rewind" bench ingest "$@" --json "$out/$name.json" >"$out/$name.txt" 2>&1
}

row() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {r['rates']['consumed']:,.0f}/s | {r['rates']['committed']:,.0f}/s "
      f"| {r['freshness_ms']['p99'] / 1000:.2f} s | {r['rss_mib']['peak']:,.0f} MiB |")
EOF
}

header() {
    echo
    echo "| $1 | consumed | committed | freshness p99 | RSS peak |"
    echo "|---|---|---|---|---|"
}

if [ "$what" = viewers ] || [ "$what" = all ]; then
    for v in 10000 100000 1000000; do
        run "viewers-$v" --max --viewers "$v" --duration "$duration" --warmup "$warmup"
    done
    header viewers
    for v in 10000 100000 1000000; do row "$v" "$out/viewers-$v.json"; done
fi

if [ "$what" = workers ] || [ "$what" = all ]; then
    for w in 1 2; do
        run "workers-$w" --max --viewers 100000 --workers "$w" --duration "$duration" \
            --warmup "$warmup"
    done
    header workers
    for w in 1 2; do row "$w" "$out/workers-$w.json"; done
fi

if [ "$what" = memory ] || [ "$what" = all ]; then
    run memory --rate "${RATE:-100000}" --viewers 1000000 --duration "${LONG:-300s}" \
        --warmup "$warmup"
    echo
    echo "| seconds | events consumed | RSS |"
    echo "|---|---|---|"
    python3 - "$out/memory.json" <<'EOF'
import json, sys
samples = json.load(open(sys.argv[1]))["samples"]
step = max(1, len(samples) // 10)
for s in samples[step - 1::step]:
    print(f"| {s['t_s']:.0f} | {s['consumed']:,} | {s['rss_mib']:,.0f} MiB |")
EOF
fi
