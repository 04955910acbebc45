#!/usr/bin/env bash
# Compare rlmd with the reference Python library `rlms` on the same scripted fake model:
# per-iteration overhead (everything but model latency) and wall time of an N-iteration run.
#   benches/compare/run.sh            (env: RLMD, VENV, N, REPS, LATENCIES)
# Needs python3 (venv), curl and jq; PyPI for the first `pip install rlms`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
RLMD=${RLMD:-$HERE/../../target/release/rlmd}
VENV=${VENV:-/tmp/rlms-venv}
N=${N:-30}
REPS=${REPS:-3}
LATENCIES=${LATENCIES:-"0 200"}
PROMPT="Benchmark run: follow the scripted turns."
CONTEXT="bench"

[[ -x $RLMD ]] || { echo "no rlmd binary at $RLMD (cargo build --release)" >&2; exit 1; }
if ! "$VENV/bin/python" -c 'import rlm' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade rlms
fi
echo "rlms $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("rlms"))')," \
  "$("$RLMD" --version 2>/dev/null || echo 'rlmd ?'), N=$N, reps=$REPS"

WORK=$(mktemp -d /tmp/rlmd-compare.XXXXXX)
chmod 755 "$WORK"   # REPL users must reach the scratch directory below it
OUT=$WORK/results.jsonl
FAKE_PID= RLMD_PID=
cleanup() {
  for pid in $RLMD_PID $FAKE_PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
now() { date +%s.%N; }

FAKE=http://127.0.0.1:$(free_port)
RLMD_URL=http://127.0.0.1:$(free_port)

for lat in $LATENCIES; do
  python3 "$HERE/fake_openai.py" --port "${FAKE##*:}" --latency-ms "$lat" --iterations "$N" &
  FAKE_PID=$!
  wait_for "$FAKE/stats"

  dir=$WORK/rlmd-$lat && mkdir -p "$dir/scratch"
  RLM_BIND=${RLMD_URL#http://} DATABASE_URL=sqlite://$dir/rlmd.db OPENAI_BASE_URL=$FAKE/v1 \
    OPENAI_API_KEY=test RLM_SCRATCH_DIR=$dir/scratch RLM_CONTEXT_CACHE_DIR=$dir/contexts "$RLMD" serve >"$dir/rlmd.log" 2>&1 &
  RLMD_PID=$!
  wait_for "$RLMD_URL/healthz"

  for rep in $(seq "$REPS"); do
    # rlmd: submit, follow the event stream until it closes
    curl -sf -X POST "$FAKE/reset" >/dev/null
    body=$(jq -nc --arg p "$PROMPT" --arg c "$CONTEXT" '{prompt: $p, context: $c, max_iterations: 35}')
    t0=$(now)
    id=$(curl -sf "$RLMD_URL/v1/runs" -H 'content-type: application/json' -d "$body" | jq -r .id)
    curl -sfN --max-time 300 "$RLMD_URL/v1/runs/$id/events" >"$dir/events-$rep.txt"
    t1=$(now)
    run=$(curl -sf "$RLMD_URL/v1/runs/$id")
    [[ $(jq -r '"\(.status) \(.answer)"' <<<"$run") == "succeeded done" ]] ||
      { echo "rlmd run did not succeed: $run" >&2; exit 1; }
    python3 "$HERE/bench.py" record "$FAKE/stats" rlmd "$lat" "$(awk "BEGIN{printf \"%.6f\", $t1 - $t0}")" "$N" "$OUT"

    # rlms: one completion() in a fresh process, timed around the call
    curl -sf -X POST "$FAKE/reset" >/dev/null
    wall=$(cd "$WORK" && "$VENV/bin/python" "$HERE/bench.py" rlms "$FAKE/v1" "$PROMPT" "$CONTEXT")
    python3 "$HERE/bench.py" record "$FAKE/stats" rlms "$lat" "$wall" "$N" "$OUT"
    echo "latency ${lat}ms rep $rep done"
  done

  kill "$RLMD_PID" && wait "$RLMD_PID" || true   # SIGTERM
  kill "$FAKE_PID" && wait "$FAKE_PID" 2>/dev/null || true
  RLMD_PID= FAKE_PID=
done

echo
python3 "$HERE/bench.py" table "$OUT"
echo "(raw results: $OUT)"
