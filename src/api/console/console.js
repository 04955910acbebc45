// The rlmd console: a client of rlmd's public API and nothing else. Pages are routed by the
// URL's hash; a run's page follows its events over SSE (read with fetch, so that an API key
// can be sent) and re-reads the trajectory as they come. Text from the server is only ever
// set as textContent, never as HTML.
"use strict";

const KEY_STORE = "rlmd-api-key";
const main = document.getElementById("main");
let leavePage = () => {};

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const headers = Object.assign({}, authHeaders(), options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  // A file goes as it is (the browser streams it from disk), not as JSON.
  const body = options.file !== undefined ? options.file
    : options.body === undefined ? undefined : JSON.stringify(options.body);
  const response = await fetch(path, { method: options.method || "GET", headers, signal: options.signal, body });
  if (response.status === 401) askForKey();
  if (!response.ok) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return options.raw ? response : response.json();
}

/** Reads a run's Server-Sent Events, resuming after `last` on every reconnect. */
function follow(runId, onEvent, onEnd) {
  const controller = new AbortController();
  let last = 0, stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const response = await api(`/v1/runs/${runId}/events`,
          { raw: true, signal: controller.signal, headers: last ? { "Last-Event-ID": String(last) } : {} });
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "", event = {};
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, cut).replace(/\r$/, "");
            buffer = buffer.slice(cut + 1);
            if (line === "") {
              if (event.data) {
                last = Number(event.id) || last;
                const envelope = JSON.parse(event.data);
                onEvent(envelope);
                if (envelope.run_id === runId && /^run\.(succeeded|failed|cancelled)$/.test(envelope.type)) {
                  stopped = true; onEnd(); return;
                }
              }
              event = {};
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              event[field] = field === "data" && event.data ? event.data + "\n" + text : text;
            }
          }
        }
        // The stream closed: the run had ended before it opened (or the server went away).
        stopped = true; onEnd();
      } catch (error) {
        if (stopped || controller.signal.aborted) return;
        await new Promise(resolve => setTimeout(resolve, 1000));
      }
    }
  })();
  return () => { stopped = true; controller.abort(); };
}

// ---------------------------------------------------------------- small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const money = usd => "$" + (usd || 0).toFixed(usd >= 1 ? 2 : 4);
const tokens = n => (n || 0) >= 10000 ? ((n / 1000).toFixed(1) + "k") : String(n || 0);
function duration(run) {
  if (!run.started_at) return "—";
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  return ((end - Date.parse(run.started_at)) / 1000).toFixed(1) + " s";
}
function clip(text, max) {
  text = text || "";
  return text.length > max ? text.slice(0, max) + "…" : text;
}
const statusTag = status => el("span", { class: "status " + status }, status);

function showError(error) {
  main.replaceChildren(el("div", { class: "card error-box" },
    error instanceof ApiError ? `${error.status} ${error.code}: ${error.message}` : String(error)));
}

async function download(path, name) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: name });
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------- the API key

function askForKey() {
  const dialog = document.getElementById("key-dialog");
  if (!dialog.open) dialog.showModal();
}

document.getElementById("key-button").addEventListener("click", askForKey);
document.getElementById("key-dialog").addEventListener("close", () => {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  if (dialog.returnValue === "save" && input.value.trim()) {
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = "";
    // Every script of the page has loaded by then (run.js holds a run's page).
window.addEventListener("DOMContentLoaded", route);
  }
});

// ---------------------------------------------------------------- pages

// Looked up when routing: run.js, loaded after this script, defines `runPage`.
const pages = () => ({
  runs: runsPage, run: runPage, submit: submitPage, sessions: sessionsPage,
  session: sessionPage, comparisons: comparisonsPage, comparison: comparisonPage, providers: providersPage,
});

function route() {
  leavePage();
  leavePage = () => {};
  const [name, id] = (location.hash.replace(/^#\/?/, "") || "runs").split("/");
  const page = name === "runs" && id ? "run" : name === "sessions" && id ? "session"
    : name === "comparisons" && id ? "comparison" : name;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  (pages()[page] || runsPage)(id ? decodeURIComponent(id) : undefined);
}
window.addEventListener("hashchange", route);

/** Re-renders every `ms` while the page is shown. */
function every(ms, render) {
  let timer = null, gone = false;
  const tick = async () => { await render(); if (!gone) timer = setTimeout(tick, ms); };
  tick();
  leavePage = () => { gone = true; clearTimeout(timer); };
}

function runsPage() {
  const filter = el("select", { "aria-label": "Status", onchange: () => { cursors.length = 0; refresh(); } },
    ["", "queued", "running", "succeeded", "failed", "cancelled"].map(s => el("option", { value: s }, s || "all statuses")));
  const cursors = [];
  const body = el("tbody");
  const pager = el("div", { class: "toolbar" });
  main.replaceChildren(el("h1", {}, "Runs"), el("div", { class: "toolbar" }, filter,
    el("a", { href: "#/submit" }, "Submit a run")),
    el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {},
      el("th", {}, "Status"), el("th", {}, "Prompt"), el("th", { class: "hide-small" }, "Model"),
      el("th", { class: "num" }, "Iter."), el("th", { class: "num hide-small" }, "Tokens"),
      el("th", { class: "num" }, "Cost"), el("th", { class: "num hide-small" }, "Time"))), body)), pager);
  async function refresh() {
    const params = new URLSearchParams({ limit: "20" });
    if (filter.value) params.set("status", filter.value);
    if (cursors.length) params.set("cursor", cursors[cursors.length - 1]);
    let page;
    try { page = await api("/v1/runs?" + params); } catch (error) { body.replaceChildren(el("tr", {}, el("td", { colspan: 7 }, error.message))); return; }
    body.replaceChildren(...page.runs.map(run => el("tr", { "data-run": run.id },
      el("td", {}, statusTag(run.status)),
      el("td", { class: "preview" }, el("a", { href: "#/runs/" + run.id }, clip(run.prompt_preview, 120) || "(no prompt)")),
      el("td", { class: "hide-small" }, `${run.provider}/${run.model}`),
      el("td", { class: "num" }, run.iterations),
      el("td", { class: "num hide-small" }, tokens(run.tree ? run.tree.usage.total_tokens : run.usage.total_tokens)),
      el("td", { class: "num" }, money(run.cost_usd)),
      el("td", { class: "num hide-small" }, duration(run)))));
    if (!page.runs.length) body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No runs yet.")));
    pager.replaceChildren(
      el("button", { class: "quiet", disabled: !cursors.length, onclick: () => { cursors.pop(); refresh(); } }, "Newer"),
      el("button", { class: "quiet", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); refresh(); } }, "Older"));
  }
  every(2000, refresh);
}

async function submitPage() {
  const providers = await api("/v1/providers").catch(() => ({ providers: [], default_provider: "" }));
  const configured = providers.providers.filter(p => p.configured);
  const field = (label, input) => el("div", {}, el("label", { for: input.id }, label), input);
  const prompt = el("textarea", { id: "prompt", required: true, placeholder: "What should the model find out?" });
  const context = el("textarea", { id: "context", placeholder: "Paste the context here, or choose a file below." });
  const file = el("input", { id: "context-file", type: "file" });
  const provider = el("select", { id: "provider" }, configured.map(p =>
    el("option", { value: p.name, selected: p.name === providers.default_provider }, p.name)));
  const model = el("input", { id: "model", placeholder: "the provider's default" });
  const subModel = el("input", { id: "sub-model", placeholder: "the root model" });
  const depth = el("input", { id: "max-depth", type: "number", min: 0, max: 5, placeholder: "server default" });
  const iterations = el("input", { id: "max-iterations", type: "number", min: 1, max: 100, placeholder: "server default" });
  const timeout = el("input", { id: "timeout", type: "number", min: 1, placeholder: "seconds" });
  const maxCost = el("input", { id: "max-cost", type: "number", min: 0, step: "0.01", placeholder: "USD" });
  const maxTokens = el("input", { id: "max-tokens", type: "number", min: 1, placeholder: "tokens" });
  const message = el("div");
  const setModelHint = () => {
    const chosen = configured.find(p => p.name === provider.value);
    model.placeholder = chosen && chosen.default_model ? chosen.default_model : "the provider's default";
  };
  provider.addEventListener("change", setModelHint); setModelHint();
  const form = el("form", { class: "submit", onsubmit: async event => {
    event.preventDefault();
    const body = { prompt: prompt.value };
    try {
      const chosen = file.files[0];
      if (chosen) {
        // Uploaded once and named by id: a file may be far larger than a request body.
        const format = /\.(jsonl|ndjson)$/i.test(chosen.name) ? "jsonl" : /\.json$/i.test(chosen.name) ? "json" : "text";
        message.replaceChildren(el("p", { class: "muted" }, `Uploading ${chosen.name}…`));
        const query = `format=${format}&name=${encodeURIComponent(chosen.name.slice(0, 200))}`;
        body.context_id = (await api(`/v1/contexts?${query}`, { method: "POST", file: chosen })).id;
      } else if (context.value) {
        body.context = context.value;
      }
    } catch (error) {
      message.replaceChildren(el("div", { class: "card error-box", role: "alert" }, `${error.code}: ${error.message}`));
      return;
    }
    const number = input => input.value === "" ? undefined : Number(input.value);
    Object.assign(body, { provider: provider.value || undefined, model: model.value || undefined,
      sub_model: subModel.value || undefined, max_depth: number(depth), max_iterations: number(iterations) });
    const limits = { timeout_s: number(timeout), max_cost_usd: number(maxCost), max_tokens: number(maxTokens) };
    if (Object.values(limits).some(v => v !== undefined)) body.limits = limits;
    try {
      const run = await api("/v1/runs", { method: "POST", body: JSON.parse(JSON.stringify(body)) });
      location.hash = "#/runs/" + run.id;
    } catch (error) {
      message.replaceChildren(el("div", { class: "card error-box", role: "alert" }, `${error.code}: ${error.message}`));
    }
  } },
  field("Prompt", prompt), field("Context", context), field("…or a context file", file),
  el("div", { class: "grid" }, field("Provider", provider), field("Model", model), field("Sub-model", subModel),
    field("Max depth", depth), field("Max iterations", iterations), field("Time limit (s)", timeout),
    field("Max cost (USD)", maxCost), field("Max tokens", maxTokens)),
  el("div", { class: "toolbar" }, el("button", { type: "submit", id: "submit-run" }, "Submit")), message);
  main.replaceChildren(el("h1", {}, "Submit a run"), form);
}

function sessionsPage() {
  const body = el("tbody");
  main.replaceChildren(el("h1", {}, "Sessions"), el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Latest prompt"), el("th", { class: "num" }, "Turns"),
      el("th", { class: "hide-small" }, "Last used"))), body)));
  every(3000, async () => {
    const page = await api("/v1/sessions?limit=50").catch(error => ({ sessions: [], error }));
    body.replaceChildren(...page.sessions.map(s => el("tr", {}, el("td", {}, statusTag(s.status)),
      el("td", { class: "preview" }, el("a", { href: "#/sessions/" + s.id }, clip(s.prompt_preview, 120) || "(no turn yet)")),
      el("td", { class: "num" }, s.turns), el("td", { class: "hide-small" }, s.last_used_at))));
  });
}

async function sessionPage(id) {
  try {
    const session = await api("/v1/sessions/" + id);
    main.replaceChildren(el("h1", {}, "Session"), el("div", { class: "facts" }, statusTag(session.status),
      el("span", {}, "Turns ", el("b", {}, session.turns))),
      el("table", {}, session.runs.map(r => el("tr", {}, el("td", {}, "Turn " + (r.turn + 1)), el("td", {}, statusTag(r.status)),
        el("td", {}, el("a", { href: "#/runs/" + r.id }, r.id))))));
  } catch (error) { showError(error); }
}

function comparisonsPage() {
  const body = el("tbody");
  main.replaceChildren(el("h1", {}, "Comparisons"), el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Prompt"), el("th", {}, "Targets"))), body)));
  every(3000, async () => {
    const page = await api("/v1/comparisons?limit=50").catch(() => ({ comparisons: [] }));
    body.replaceChildren(...page.comparisons.map(c => el("tr", {}, el("td", {}, statusTag(c.status)),
      el("td", { class: "preview" }, el("a", { href: "#/comparisons/" + c.id }, clip(c.prompt_preview, 120))),
      el("td", {}, c.runs.map(t => `${t.provider}/${t.model}`).join(", ")))));
  });
}

function comparisonPage(id) {
  every(2000, async () => {
    let comparison;
    try { comparison = await api("/v1/comparisons/" + id); } catch (error) { showError(error); return; }
    main.replaceChildren(el("h1", {}, "Comparison"), el("div", { class: "facts" }, statusTag(comparison.status)),
      el("div", { class: "side-by-side", id: "comparison" }, comparison.results.map(r => el("div", { class: "card", "data-run": r.run_id },
        el("h2", {}, `${r.provider}/${r.model}`,
          comparison.fastest === r.run_id ? el("span", { class: "tag good" }, "fastest") : null,
          comparison.cheapest === r.run_id ? el("span", { class: "tag good" }, "cheapest") : null),
        el("div", { class: "facts" }, statusTag(r.status),
          el("span", {}, "Time ", el("b", {}, r.wall_ms === null ? "—" : (r.wall_ms / 1000).toFixed(2) + " s")),
          el("span", {}, "Tokens ", el("b", {}, tokens(r.usage.total_tokens))),
          el("span", {}, "Cost ", el("b", {}, money(r.cost_usd)))),
        r.error ? el("div", { class: "stderr" }, `${r.error.code}: ${r.error.message}`) : null,
        el("div", { class: "answer" }, r.answer_text || ""),
        el("a", { href: "#/runs/" + r.run_id }, "Trajectory")))));
  });
}

function providersPage() {
  every(3000, async () => {
    let list;
    try { list = await api("/v1/providers"); } catch (error) { showError(error); return; }
    main.replaceChildren(el("h1", {}, "Providers"), el("div", { class: "table-wrap" }, el("table", {},
      el("tr", {}, el("th", {}, "Provider"), el("th", {}, "Configured"), el("th", {}, "Default model"),
        el("th", { class: "num" }, "Cap now / max"), el("th", { class: "num" }, "In flight"), el("th", { class: "num hide-small" }, "Known models")),
      list.providers.map(p => el("tr", {}, el("td", {}, p.name, p.name === list.default_provider ? el("span", { class: "tag" }, "default") : null),
        el("td", {}, p.configured ? "yes" : "no"), el("td", {}, p.default_model || "—"),
        el("td", { class: "num" }, p.configured ? `${p.concurrency_limit} / ${p.max_concurrency}` : "—"),
        el("td", { class: "num" }, p.in_flight ?? "—"),
        el("td", { class: "num hide-small" }, p.models.length))))));
  });
}

// Every script of the page has loaded by then (run.js holds a run's page).
window.addEventListener("DOMContentLoaded", route);
