#!/usr/bin/env bash
# Submits the example runs to rlmd and shows how they go.
#
#   examples/run.sh [--no-follow] [NAME...]
#
# NAME is an example file name or a unique part of one: 01, quickstart,
# 02_context_as_variable, 04_data_analysis.json ... (default: every example).
# A "context" of the form "@data/FILE" is replaced by that file's text.
# By default the run's events are followed live (SSE); with --no-follow the
# script only polls the run until it has finished. Either way it then prints
# the answer. The server is ${RLMD_URL:-http://127.0.0.1:8080}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="${RLMD_URL:-http://127.0.0.1:8080}"
base="${base%/}"
follow=1
names=()

usage() { sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

for arg in "$@"; do
  case "$arg" in
    --no-follow) follow=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; usage >&2; exit 2 ;;
    *) names+=("$arg") ;;
  esac
done
if ((${#names[@]} == 0)); then
  for file in "$here"/[0-9]*.json; do names+=("$(basename "$file" .json)"); done
fi

# Prints the path of the example called $1, or fails.
resolve() {
  local name="${1%.json}" matches=()
  name="${name##*/}"
  if [[ -f "$here/$name.json" ]]; then
    echo "$here/$name.json"
    return
  fi
  shopt -s nullglob
  matches=("$here"/*"$name"*.json)
  shopt -u nullglob
  if ((${#matches[@]} != 1)); then
    echo "no single example matches '$1' (found ${#matches[@]})" >&2
    return 1
  fi
  echo "${matches[0]}"
}

# Reads an example file and prints the request body, with "@data/..." filled in.
build_body='
import json, os, sys
path = sys.argv[1]
body = json.load(open(path, encoding="utf-8"))
ctx = body.get("context")
if isinstance(ctx, str) and ctx.startswith("@"):
    with open(os.path.join(os.path.dirname(path), ctx[1:]), encoding="utf-8") as f:
        body["context"] = f.read()
json.dump(body, sys.stdout)
'

# Prints one field of the JSON object on stdin ("" for null).
field='
import json, sys
value = json.load(sys.stdin).get(sys.argv[1])
print("" if value is None else value)
'

# Turns the SSE stream on stdin into one short line per event.
format_events='
import json, sys
root = sys.argv[1]

def first_line(text, width=100):
    text = (text or "").strip()
    line = text.splitlines()[0] if text else ""
    more = len(text.splitlines()) > 1
    if len(line) > width:
        line, more = line[:width], True
    return line + (" ..." if more else "")

def summary(kind, d):
    if kind == "run.started":
        return "attempt %s" % d.get("attempt")
    if kind == "iteration.started":
        return "iteration %s" % d.get("iteration")
    if kind == "llm.called":
        text = "%s %s: %s in / %s out tokens, %s ms" % (d.get("kind"), d.get("model"),
            d.get("input_tokens"), d.get("output_tokens"), d.get("latency_ms"))
        return text + ("  ERROR " + first_line(d["error"]) if d.get("error") else "")
    if kind == "code.executed":
        where = "block %s" % d.get("block")
        if d.get("timed_out"):
            return where + ": TIMED OUT"
        if d.get("stdout", "").strip():
            return where + ": " + first_line(d["stdout"])
        if d.get("error") or d.get("stderr"):
            return where + ": ERROR " + first_line(d.get("error") or d.get("stderr"))
        return where + ": (no output)"
    if kind == "iteration.finished":
        return "%s block(s)%s" % (d.get("code_blocks"), ", answered" if d.get("answered") else "")
    if kind.startswith("subcalls."):
        return "%s prompt(s)%s" % (d.get("count"),
            ", %s failed" % d["failed"] if d.get("failed") else "")
    if kind in ("run.succeeded", "run.failed", "run.cancelled"):
        err = d.get("error") or {}
        if err:
            return "%s: %s" % (err.get("code"), err.get("message"))
        return "finish_reason: %s" % d.get("finish_reason") if d.get("finish_reason") else ""
    return ""

data = []
for raw in sys.stdin:
    line = raw.rstrip("\r\n")
    if line.startswith("data:"):
        data.append(line[5:].lstrip())
    elif line == "" and data:
        try:
            ev = json.loads("\n".join(data))
        except ValueError:
            ev = None
        data = []
        if not isinstance(ev, dict):
            continue
        kind = ev.get("type", "?")
        who = "" if ev.get("run_id") in (None, root) else "[child %s] " % str(ev["run_id"])[:8]
        print("  %4s %-20s %s%s" % (ev.get("seq", ""), kind, who, summary(kind, ev.get("data") or {})), flush=True)
'

# Prints the outcome of the run JSON on stdin.
show_result='
import json, sys
run = json.load(sys.stdin)
print("status: %s (%s iterations)" % (run.get("status"), run.get("iterations")))
if run.get("usage"):
    print("usage:  " + json.dumps(run["usage"], separators=(", ", ": ")))
if run.get("error"):
    print("error:  %s: %s" % (run["error"].get("code"), run["error"].get("message")))
if run.get("answer") is not None:
    print("answer:")
    print(run["answer"])
'

# Polls GET /v1/runs/{id} until the run has finished; prints the run JSON.
wait_for() {
  local id="$1" run status last=""
  while true; do
    run="$(curl -sS --fail "$base/v1/runs/$id")" || return 1
    status="$(python3 -c "$field" status <<<"$run")" || return 1
    case "$status" in
      succeeded | failed | cancelled) printf '%s\n' "$run"; return ;;
    esac
    if [[ "$status" != "$last" ]]; then
      echo "  ... $status" >&2
      last="$status"
    fi
    sleep 2
  done
}

rc=0
for name in "${names[@]}"; do
  file="$(resolve "$name")" || { rc=1; continue; }
  echo "=== $(basename "$file" .json)"
  response="$(python3 -c "$build_body" "$file" |
    curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- \
      -w '\n%{http_code}' "$base/v1/runs")" || true
  code="${response##*$'\n'}"
  response="${response%$'\n'*}"
  if [[ "$code" != 202 ]]; then
    echo "submit failed (HTTP $code): $response" >&2
    rc=1
    continue
  fi
  id="$(python3 -c "$field" id <<<"$response")"
  echo "run id: $id"
  if ((follow)); then
    # The stream ends by itself after the run's last event.
    curl -sS -N -H 'Accept: text/event-stream' "$base/v1/runs/$id/events" |
      python3 -u -c "$format_events" "$id" ||
      echo "  (event stream interrupted; polling instead)" >&2
  fi
  if ! run="$(wait_for "$id")"; then
    echo "could not read run $id" >&2
    rc=1
    continue
  fi
  python3 -c "$show_result" <<<"$run"
  final="$(python3 -c "$field" status <<<"$run")"
  [[ "$final" == succeeded ]] || rc=1
  echo
done
exit "$rc"
