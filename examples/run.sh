#!/usr/bin/env bash
# Submits the example runs to rlmd and shows how they go.
#
#   examples/run.sh [--no-follow] [--targets LIST] [NAME...]
#
# NAME is an example file name or a unique part of one: 01, quickstart,
# 02_context_as_variable, 04_data_analysis.json ... (default: every example).
# A "context" of the form "@data/FILE" is replaced by that file's text.
# By default the run's events are followed live (SSE); with --no-follow the
# script only polls the run until it has finished. Either way it then prints
# the answer. The server is ${RLMD_URL:-http://127.0.0.1:8080}.
#
# An example with "targets" (07_multi_provider) is a comparison: it is posted
# to /v1/comparisons, which starts one run per target, and polled every second
# until all of them have finished (at most ${RLMD_COMPARE_TIMEOUT_S:-900} s).
# Then a table sets their status, wall time, tokens, cost and answer side by
# side, and the fastest and the cheapest are named.
#
#   --targets LIST  replaces the targets of such an example: provider names,
#                   comma separated, each optionally as provider:model, e.g.
#                   --targets openai:gpt-4o-mini,gemini 07
#
# Every target's provider has to be configured on the server, or the whole
# comparison is refused. GET /v1/providers shows what the server has
# configured ("configured": true); pick from those with --targets.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base="${RLMD_URL:-http://127.0.0.1:8080}"
base="${base%/}"
follow=1
targets=""
targets_given=0
names=()
compare_timeout="${RLMD_COMPARE_TIMEOUT_S:-900}"

# The comment block at the top, up to `set`.
usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p;}' "${BASH_SOURCE[0]}"; }

while (($#)); do
  case "$1" in
    --no-follow) follow=0 ;;
    --targets)
      if (($# < 2)); then
        echo "--targets needs a value" >&2; usage >&2; exit 2
      fi
      targets="$2"
      targets_given=1
      shift
      ;;
    --targets=*) targets="${1#*=}"; targets_given=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; names+=("$@"); break ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done
if [[ ! "$compare_timeout" =~ ^[0-9]+$ ]]; then
  echo "RLMD_COMPARE_TIMEOUT_S must be a number of seconds" >&2
  exit 2
fi
if ((${#names[@]} == 0)); then
  for file in "$here"/[0-9]*.json; do names+=("$(basename "$file" .json)"); done
fi

# Turns --targets "openai,anthropic:MODEL" into a JSON list of targets.
parse_targets='
import json, sys
targets = []
for item in sys.argv[1].split(","):
    item = item.strip()
    if not item:
        continue
    provider, colon, model = (part.strip() for part in item.partition(":"))
    if not provider or (colon and not model):
        sys.exit("--targets: %r is not PROVIDER or PROVIDER:MODEL" % item)
    targets.append({"provider": provider, "model": model} if model else {"provider": provider})
if not targets:
    sys.exit("--targets: no provider given")
json.dump(targets, sys.stdout)
'
targets_json=""
if ((targets_given)); then
  targets_json="$(python3 -c "$parse_targets" "$targets")" || exit 2
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

# Reads an example file and prints the request body, with "@data/..." filled in
# and, for a comparison, the targets replaced by the JSON list in $2 (if any).
build_body='
import json, os, sys
path = sys.argv[1]
body = json.load(open(path, encoding="utf-8"))
ctx = body.get("context")
if isinstance(ctx, str) and ctx.startswith("@"):
    with open(os.path.join(os.path.dirname(path), ctx[1:]), encoding="utf-8") as f:
        body["context"] = f.read()
if "targets" in body and len(sys.argv) > 2 and sys.argv[2]:
    body["targets"] = json.loads(sys.argv[2])
json.dump(body, sys.stdout)
'

# Succeeds if the JSON object on stdin has the field $1.
has_field='
import json, sys
sys.exit(0 if sys.argv[1] in json.load(sys.stdin) else 1)
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

# Lists the runs a comparison has started (the 202 reply on stdin).
show_started='
import json, sys
reply = json.load(sys.stdin)
print("comparison id: %s" % reply.get("id"))
runs = reply.get("runs") or []
width = max([len("%s %s" % (r.get("provider"), r.get("model") or "-")) for r in runs] + [0])
for r in runs:
    who = "%s %s" % (r.get("provider"), r.get("model") or "-")
    print("  %-*s  run id: %s" % (width, who, r.get("run_id")))
'

# One line on how far the comparison on stdin has got.
comparison_progress='
import json, sys
results = json.load(sys.stdin).get("results") or []
done = sum(r.get("status") in ("succeeded", "failed", "cancelled") for r in results)
print("%d/%d finished: %s" % (done, len(results),
    ", ".join("%s %s" % (r.get("provider"), r.get("status")) for r in results)))
'

# The names of the providers configured on the server (GET /v1/providers on stdin).
configured_providers='
import json, sys
reply = json.load(sys.stdin)
print(",".join(p["name"] for p in reply.get("providers") or [] if p.get("configured")))
'

# Prints the comparison on stdin as a table, then the fastest and the cheapest.
# Exits 1 unless every target succeeded.
show_comparison='
import json, sys
comparison = json.load(sys.stdin)
results = comparison.get("results") or []

def cut(text, width=60):
    lines = (text or "").strip().splitlines()
    line = lines[0].strip() if lines else ""
    if len(line) > width:
        return line[:width - 4].rstrip() + " ..."
    return line + (" ..." if len(lines) > 1 else "")

def money(cost):
    if not cost:
        return "-"
    return "%.4f" % cost if cost >= 0.0001 else "<0.0001"

def seconds(ms):
    return "-" if ms is None else "%.1f" % (ms / 1000)

def cost_of(r):
    return r.get("cost_usd") or (r.get("usage") or {}).get("cost_usd") or 0

header = ["PROVIDER", "MODEL", "STATUS", "WALL S", "TOKENS IN/OUT", "COST USD", "ANSWER"]
rows = []
for r in results:
    usage = r.get("usage") or {}
    if r.get("answer") is not None:
        answer = cut(r["answer"])
    elif r.get("error"):
        err = r["error"]
        answer = cut("ERROR %s: %s" % (err.get("code"), err.get("message")))
    else:
        answer = "-"
    tokens = "%s/%s" % (usage.get("input_tokens", 0), usage.get("output_tokens", 0)) if usage else "-"
    rows.append([str(r.get("provider")), r.get("model") or "-", str(r.get("status")),
                 seconds(r.get("wall_ms")), tokens, money(cost_of(r)), answer])

widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header) - 1)]
right = {3, 4, 5}
for row in [header] + rows:
    cells = [cell.rjust(w) if i in right else cell.ljust(w)
             for i, (cell, w) in enumerate(zip(row, widths))]
    print("  " + "  ".join(cells + [row[-1]]))

if comparison.get("status") == "finished":
    by_id = {r.get("run_id"): r for r in results}
    def who(r):
        return "%s %s (run %s)" % (r.get("provider"), r.get("model") or "-", r.get("run_id"))
    fastest = by_id.get(comparison.get("fastest"))
    cheapest = by_id.get(comparison.get("cheapest"))
    if fastest:
        print("fastest:  %s, %s s" % (who(fastest), seconds(fastest.get("wall_ms"))))
    else:
        print("fastest:  - (no target succeeded)")
    if not cheapest:
        print("cheapest: - (no target succeeded)")
    elif cost_of(cheapest):
        print("cheapest: %s, $%s" % (who(cheapest), money(cost_of(cheapest))))
    elif any(cost_of(r) for r in results if r.get("status") == "succeeded"):
        print("cheapest: %s, cost 0 (no price known for its model?)" % who(cheapest))
    else:
        print("cheapest: - (no costs known: the server has no prices for these models)")
sys.exit(0 if results and all(r.get("status") == "succeeded" for r in results) else 1)
'

# POSTs the body on stdin to the path $1; sets $code and $response.
post() {
  response="$(curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- \
    -w '\n%{http_code}' "$base$1")" || true
  code="${response##*$'\n'}"
  response="${response%$'\n'*}"
}

# Polls GET /v1/comparisons/{id} every second until every run has finished, and
# prints the comparison JSON. After $compare_timeout seconds it prints what it
# has and returns 2; it returns 1 if the comparison cannot be read.
wait_comparison() {
  local id="$1" comparison status progress last="" deadline=$((SECONDS + compare_timeout))
  while true; do
    comparison="$(curl -sS --fail "$base/v1/comparisons/$id")" || return 1
    status="$(python3 -c "$field" status <<<"$comparison")" || return 1
    if [[ "$status" == finished ]]; then
      printf '%s\n' "$comparison"
      return
    fi
    progress="$(python3 -c "$comparison_progress" <<<"$comparison")" || return 1
    if [[ "$progress" != "$last" ]]; then
      echo "  ... $progress" >&2
      last="$progress"
    fi
    if ((SECONDS >= deadline)); then
      printf '%s\n' "$comparison"
      return 2
    fi
    sleep 1
  done
}

# Submits the comparison body $1 and reports on it; fails unless every target succeeded.
compare() {
  local body="$1" id comparison configured waited=0
  post /v1/comparisons <<<"$body"
  if [[ "$code" != 202 ]]; then
    echo "submit failed (HTTP $code): $response" >&2
    if [[ "$response" == *provider_not_configured* ]]; then
      if configured="$(curl -sS --fail "$base/v1/providers" |
        python3 -c "$configured_providers")" && [[ -n "$configured" ]]; then
        echo "configured on the server (GET $base/v1/providers): $configured;" \
          "compare those with: --targets $configured" >&2
      else
        echo "no configured provider found at GET $base/v1/providers" >&2
      fi
    fi
    return 1
  fi
  python3 -c "$show_started" <<<"$response"
  id="$(python3 -c "$field" id <<<"$response")"
  comparison="$(wait_comparison "$id")" || waited=$?
  case "$waited" in
    0) ;;
    2)
      echo "comparison $id has not finished after $compare_timeout s (RLMD_COMPARE_TIMEOUT_S);" \
        "its runs go on on the server: GET $base/v1/comparisons/$id" >&2
      echo "so far:"
      python3 -c "$show_comparison" <<<"$comparison" || true
      return 1
      ;;
    *)
      echo "could not read comparison $id (GET $base/v1/comparisons/$id)" >&2
      return 1
      ;;
  esac
  python3 -c "$show_comparison" <<<"$comparison"
}

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
compared=0
for name in "${names[@]}"; do
  file="$(resolve "$name")" || { rc=1; continue; }
  echo "=== $(basename "$file" .json)"
  body="$(python3 -c "$build_body" "$file" "$targets_json")" || { rc=1; continue; }
  if python3 -c "$has_field" targets <<<"$body"; then
    compared=1
    compare "$body" || rc=1
    echo
    continue
  fi
  post /v1/runs <<<"$body"
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
if ((targets_given && !compared)); then
  echo "note: --targets applies only to comparison examples (07_multi_provider); none ran" >&2
fi
exit "$rc"
