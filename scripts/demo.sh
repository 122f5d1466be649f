#!/usr/bin/env bash
# The main job on a built-in default: capture a short scripted scenario with eBPF, then replay it
# through the shipped rules. Run as root after scripts/setup.sh (`make demo` does both).
#
# The scenario does, for real and safely, a few things our rules look for: reads /etc/shadow with
# cat, creates and removes a scratch file below /etc, links a scratch name to /etc/shadow and
# removes it, and runs a shell pipeline as a benign workload.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${DEMO_OUT:-out}
TRACE="$OUT/demo.parquet"
mkdir -p "$OUT"
rm -f "$TRACE"

scenario() {
    sleep 2  # let the probe attach
    cat /etc/shadow > /dev/null
    scratch=/etc/.sysreplay-demo-$$
    echo demo > "$scratch" && rm -f "$scratch"
    link=/tmp/.sysreplay-demo-link-$$
    ln -s /etc/shadow "$link" && rm -f "$link"
    sh -c 'ls /usr/bin | wc -l > /dev/null'
}

echo "== capture: 6 s of syscalls while the scenario runs"
"$BIN/capture" record --duration 6s -o "$TRACE" &
recorder=$!
scenario
wait "$recorder"

echo "== analyze: $TRACE through rules/"
status=0
"$BIN/analyze" run "$TRACE" -r rules/ --html "$OUT/demo.html" || status=$?
# analyze run exits 3 when alerts were found: that is the expected outcome of the demo.
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then
    exit "$status"
fi
echo "== trace kept at $TRACE, report page at $OUT/demo.html (try: $BIN/analyze query $TRACE 'select \"proc.name\", count(*) from events group by 1 order by 2 desc limit 5')"
