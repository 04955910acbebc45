// A run's page for the rlmd console: followed live, drawn as a tree with a timeline.
// It uses the helpers of console.js (api, follow, el, …), loaded before it.
"use strict";

function runPage(id) {
  main.replaceChildren(el("p", { class: "muted" }, "Loading…"));
  // A finished run's record no longer changes: once it is drawn, the events its stream
  // replays must not redraw it (which would close what the reader has opened).
  let pending = null, ended = false, final = false, left = false;
  const refresh = () => {
    if (pending || final) return;
    pending = setTimeout(async () => {
      pending = null;
      try {
        const trajectory = await api(`/v1/runs/${id}/trajectory`);
        // The reader may have gone to another page while this was fetched.
        if (left) return;
        final = !["queued", "running"].includes(trajectory.run.status);
        renderRun(trajectory, ended || final);
      } catch (error) { if (!left) showError(error); }
    }, 150);
  };
  refresh();
  const stop = follow(id, refresh, () => { ended = true; refresh(); });
  leavePage = () => { left = true; stop(); clearTimeout(pending); };
}

function renderRun(trajectory, ended) {
  const run = trajectory.run;
  const usage = run.tree ? run.tree.usage : run.usage;
  const live = run.status === "queued" || run.status === "running";
  const cancel = el("button", { class: "danger", id: "cancel-run", disabled: !live, onclick: async () => {
    cancel.disabled = true;
    try { await api(`/v1/runs/${run.id}/cancel`, { method: "POST" }); } catch (error) { alert(error.message); }
  } }, "Cancel");
  const header = [
    el("h1", {}, clip(run.prompt, 300)),
    el("div", { class: "facts" },
      el("span", {}, statusTag(run.status)), el("span", {}, "Model ", el("b", {}, `${run.provider}/${run.model}`)),
      el("span", {}, "Iterations ", el("b", {}, run.iterations)),
      el("span", {}, "Tokens ", el("b", {}, tokens(usage.total_tokens))),
      el("span", {}, "Calls ", el("b", {}, usage.llm_calls)),
      el("span", {}, "Cost ", el("b", {}, money(usage.cost_usd))),
      el("span", {}, "Time ", el("b", {}, duration(run))),
      run.tree ? el("span", {}, "Runs in tree ", el("b", {}, run.tree.runs)) : null),
    el("div", { class: "toolbar" }, cancel,
      el("button", { class: "quiet", onclick: () => download(`/v1/runs/${run.id}/trajectory`, `${run.id}.json`) }, "Download JSON"),
      el("button", { class: "quiet", onclick: () => download(`/v1/runs/${run.id}/trajectory?format=rlms`, `${run.id}.jsonl`) }, "Download rlms JSONL"),
      run.parent_id ? el("a", { href: "#/runs/" + run.root_id }, "Root run") : null),
  ];
  const outcome = [];
  if (run.status === "succeeded") outcome.push(el("h2", {}, "Answer"), el("div", { class: "card answer", id: "answer" }, run.answer_text));
  if (run.error) {
    outcome.push(el("div", { class: "card error-box", id: "run-error" }, `${run.error.code}: ${run.error.message}`));
    if (run.answer_text) outcome.push(el("h2", {}, "Partial answer"), el("div", { class: "card answer" }, run.answer_text));
  }
  if (!ended && live) outcome.push(el("p", { class: "muted" }, "Following live…"));
  const byModel = run.tree ? run.tree.usage_by_model : run.usage_by_model;
  const spending = el("table", {}, el("tr", {}, el("th", {}, "Model"), el("th", { class: "num" }, "Calls"),
    el("th", { class: "num" }, "Input"), el("th", { class: "num" }, "Output"), el("th", { class: "num" }, "Cost")),
    Object.entries(byModel || {}).map(([model, u]) => el("tr", {}, el("td", {}, model), el("td", { class: "num" }, u.llm_calls),
      el("td", { class: "num" }, tokens(u.input_tokens)), el("td", { class: "num" }, tokens(u.output_tokens)),
      el("td", { class: "num" }, money(u.cost_usd)))));
  main.replaceChildren(...header, ...outcome,
    el("h2", {}, "Timeline"), timeline(trajectory),
    el("h2", {}, "Spending by model"), el("div", { class: "table-wrap" }, spending),
    el("h2", {}, "Trajectory"), treeNode(trajectory, 0));
}

/** One run of the tree: its iterations, code, output, sub-calls, and its children nested. */
function treeNode(node, depth) {
  const run = node.run;
  const subCalls = node.llm_calls.filter(c => c.kind === "sub");
  const box = el("div", { class: `tree-node depth-${Math.min(depth, 3)}`, "data-run": run.id });
  if (depth > 0) {
    box.append(el("div", {}, el("b", {}, `Child run (depth ${run.depth}) `), statusTag(run.status),
      el("span", { class: "muted" }, ` ${run.model} · `), el("a", { href: "#/runs/" + run.id }, "open"),
      el("div", { class: "muted" }, "Prompt: " + clip(run.prompt, 300)),
      run.answer_text ? el("div", {}, "Answer: " + clip(run.answer_text, 500)) : null,
      run.error ? el("div", { class: "stderr" }, `${run.error.code}: ${run.error.message}`) : null));
  }
  // A child is shown in the iteration whose code started it (by time: it began within it).
  const children = node.children || [];
  const startedIn = child => {
    const at = Date.parse(child.run.created_at);
    const it = node.iterations.find(i => Date.parse(i.started_at) <= at && at <= Date.parse(i.finished_at));
    return it ? it.index : null;
  };
  const childList = list => list.length > 10
    ? [el("details", {}, el("summary", {}, `${list.length} child runs`), list.map(c => treeNode(c, depth + 1)))]
    : list.map(c => treeNode(c, depth + 1));
  for (const iteration of node.iterations) {
    const calls = subCalls.filter(c => c.iteration === iteration.index);
    const kids = children.filter(c => startedIn(c) === iteration.index);
    const rootCall = node.llm_calls.filter(c => c.kind === "root" && c.iteration === iteration.index).pop();
    const body = el("div", {},
      rootCall ? sentMessages(run.id, rootCall.index) : null,
      el("details", {}, el("summary", {}, "Model reply"), el("pre", {}, iteration.reply)),
      iteration.code_blocks.map(block => el("div", { class: "code-block" },
        python(block.code),
        block.stdout ? el("pre", { class: "stdout" }, block.stdout) : null,
        block.stderr ? el("pre", { class: "stderr" }, block.stderr) : null,
        block.error ? el("pre", { class: "stderr" }, block.error) : null,
        el("div", { class: "muted" }, `${block.duration_ms} ms`,
          block.timed_out ? el("span", { class: "tag bad" }, "timed out") : null,
          block.repl_reset ? el("span", { class: "tag bad" }, "REPL reset") : null))),
      calls.length ? el("details", {}, el("summary", {}, `${calls.length} sub-call(s)`),
        calls.map(c => el("div", { class: "card" }, el("div", { class: "muted" },
          `${c.model} · ${c.latency_ms} ms · ${c.input_tokens}+${c.output_tokens} tokens · ${money(c.cost_usd)}`),
          sentMessages(run.id, c.index),
          c.error ? el("pre", { class: "stderr" }, c.error) : el("details", {}, el("summary", {}, "Reply"), el("pre", {}, c.reply))))) : null,
      childList(kids));
    box.append(el("details", { open: true, class: "iteration" },
      el("summary", {}, `Iteration ${iteration.index}`, el("span", { class: "muted" },
        ` · model ${iteration.model_ms} ms · code ${iteration.exec_ms} ms`),
        iteration.code_blocks.some(b => b.error) ? el("span", { class: "tag bad" }, "error") : null), body));
  }
  // Children of an iteration still in progress (or of none) come last.
  box.append(...childList(children.filter(c => startedIn(c) === null)));
  return box;
}

/** Where the time went: model calls and code, one lane per overlapping call. */
function timeline(trajectory) {
  const spans = [];
  const collect = node => {
    for (const call of node.llm_calls) {
      const end = Date.parse(call.created_at);
      spans.push({ kind: call.kind, start: end - call.latency_ms, end, label: `${call.kind} ${call.model} ${call.latency_ms} ms` });
    }
    for (const it of node.iterations) {
      const start = Date.parse(it.started_at) + it.model_ms;
      spans.push({ kind: "code", start, end: Date.parse(it.finished_at), label: `code, iteration ${it.index}` });
    }
    (node.children || []).forEach(collect);
  };
  collect(trajectory);
  const box = el("div", { class: "timeline" });
  if (!spans.length) return el("p", { class: "muted" }, "Nothing yet.");
  const t0 = Math.min(...spans.map(s => s.start)), t1 = Math.max(...spans.map(s => s.end), t0 + 1);
  const lanes = [];
  spans.sort((a, b) => a.start - b.start);
  for (const span of spans.slice(0, 2000)) {
    let lane = lanes.find(l => l.end <= span.start);
    if (!lane) { lane = { end: 0, node: el("div", { class: "lane" }) }; lanes.push(lane); }
    lane.end = span.end;
    const left = (span.start - t0) / (t1 - t0) * 100, width = (span.end - span.start) / (t1 - t0) * 100;
    // Positioned through the CSSOM: the page's Content-Security-Policy allows no inline style.
    const bar = el("div", { class: "bar " + span.kind, title: span.label });
    bar.style.left = left + "%"; bar.style.width = width + "%";
    lane.node.append(bar);
  }
  box.append(el("div", { class: "lane-label" }, `${((t1 - t0) / 1000).toFixed(2)} s · blue: root calls · purple: sub-calls · grey: code`),
    ...lanes.map(l => l.node));
  return box;
}

/** A fold whose content is fetched the first time it is opened (prompts can be large). */
function lazy(summary, load) {
  const box = el("details", {}, el("summary", {}, summary));
  let loaded = false;
  box.addEventListener("toggle", async () => {
    if (!box.open || loaded) return;
    loaded = true;
    const slot = el("p", { class: "muted" }, "Loading…");
    box.append(slot);
    try { slot.replaceWith(...await load()); } catch (error) { slot.textContent = error.message; }
  });
  return box;
}

/** The messages a model call sent, fetched on demand. */
function sentMessages(runId, index) {
  return lazy("Messages sent", async () => {
    const call = await api(`/v1/runs/${runId}/calls/${index}`);
    if (!call.messages) return [el("p", { class: "muted" }, "Not recorded for this call.")];
    return call.messages.map(m => el("div", { class: "message" }, el("b", {}, m.role),
      el("pre", {}, clip(m.content, 50000))));
  });
}

/** Highlights Python: keywords, strings, numbers and comments, as text nodes in spans. */
function python(code) {
  const pre = el("pre", { class: "code" });
  const pattern = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|\b(\d+(?:\.\d+)?)\b|\b(def|class|return|if|elif|else|for|while|in|not|and|or|import|from|as|with|try|except|finally|raise|lambda|None|True|False|pass|break|continue|yield|print|is)\b/g;
  let at = 0, match;
  while ((match = pattern.exec(code))) {
    pre.append(code.slice(at, match.index));
    const kind = match[1] ? "hl-com" : match[2] ? "hl-str" : match[3] ? "hl-num" : "hl-kw";
    pre.append(el("span", { class: kind }, match[0]));
    at = match.index + match[0].length;
  }
  pre.append(code.slice(at));
  return pre;
}
