# The REPL side of rlmd, loaded into the sandboxed child before any model code runs.
# It builds the namespace the model sees and runs its code blocks. Model calls go through
# `_host`, which rlmd's child process provides: it sends the request over the pipe to the
# server, which makes the call; API keys never enter this process.

import ast
import builtins
import collections
import io
import json
import linecache
import mmap
import os
import signal
import sys
import threading
import traceback

_host = None  # set by the child process before init()
_emit = None  # likewise: sends live output to the server without waiting
_ns = None
_reserved = {}
# Variables the server provides (context, context_N, history, history_N): put back after
# every block, as rlms does, so that rebinding one by accident does not stick.
_pinned = {}
_blocks_run = 0


def _clean(text):
    """Text that can cross the pipe: a lone surrogate (from bytes decoded with
    surrogateescape, say) becomes U+FFFD instead of failing the whole message."""
    if not isinstance(text, str):
        text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Through UTF-16, where a lone surrogate survives encoding and fails decoding.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _call(request):
    if request.get("fn") != "draft":
        # A model call outlasts an interval: what the block printed is sent meanwhile.
        _live.start_sending()
    reply = json.loads(_host(json.dumps(request)))
    if not reply["ok"]:
        raise RuntimeError(reply["value"])
    return reply["value"]


def _as_prompt(prompt):
    if isinstance(prompt, str):
        return _clean(prompt)
    if isinstance(prompt, (list, dict)):
        return _clean(json.dumps(prompt, ensure_ascii=False, default=str))
    return _clean(prompt)


def _as_prompts(prompts, fn):
    if isinstance(prompts, (str, bytes)) or not hasattr(prompts, "__iter__"):
        raise TypeError(f"{fn}() takes a list of prompts, got {type(prompts).__name__}")
    return [_as_prompt(p) for p in prompts]


def _model(model):
    if model is not None and not isinstance(model, str):
        raise TypeError("model must be a string or None")
    return model


def llm_query(prompt, model=None):
    """Ask a sub-model one question; returns its reply (or an 'Error: ...' string)."""
    return _call({"fn": "llm_query", "prompt": _as_prompt(prompt), "model": _model(model)})


def llm_query_batched(prompts, model=None):
    """Ask many questions at once; replies come back in the order of the prompts."""
    prompts = _as_prompts(prompts, "llm_query_batched")
    if not prompts:
        return []
    return _call({"fn": "llm_query_batched", "prompts": prompts, "model": _model(model)})


def _schema(schema):
    if schema is not None and not isinstance(schema, (dict, bool)):
        raise TypeError("schema must be a JSON Schema (a dict) or None")
    return schema


def rlm_query(prompt, model=None, schema=None):
    """Hand a sub-task to a child RLM with its own REPL (an llm_query at the depth limit).
    With a JSON Schema, the child's answer must fit it and comes back parsed (a dict, ...)."""
    request = {"fn": "rlm_query", "prompt": _as_prompt(prompt), "model": _model(model)}
    if _schema(schema) is not None:
        request["schema"] = schema
    return _call(request)


def rlm_query_batched(prompts, model=None, schema=None):
    """Several child RLMs at once; answers come back in the order of the prompts."""
    prompts = _as_prompts(prompts, "rlm_query_batched")
    if not prompts:
        return []
    request = {"fn": "rlm_query_batched", "prompts": prompts, "model": _model(model)}
    if _schema(schema) is not None:
        request["schema"] = schema
    return _call(request)


def SHOW_VARS():
    """The variables defined so far, with their types."""
    names = {
        name: type(value).__name__
        for name, value in _ns.items()
        if not name.startswith("_") and name not in _reserved and name != "answer"
        # context_0 is only another name for the first context.
        and not (name == "context_0" and value is _ns.get("context"))
    }
    if not names:
        return "No variables yet besides the built-ins (context, answer, llm_query, ...)."
    return "Variables: " + ", ".join(f"{name}: {kind}" for name, kind in names.items())


def FINAL(value):
    """Submit `value` as the final answer (same as setting answer['content'] and ['ready'])."""
    _ns["answer"] = _Answer(content=value, ready=True)
    return value


def FINAL_VAR(name):
    """Submit the variable called `name` (or, given a non-string, that value) as the answer."""
    if not isinstance(name, str):
        return FINAL(name)
    key = name.strip().strip("'\"")
    if key not in _ns:
        available = ", ".join(n for n in _ns if not n.startswith("_") and n not in _reserved)
        message = f"FINAL_VAR: no variable named {key!r}. Available: {available}"
        print(message, file=sys.stderr)
        return message
    return FINAL(_ns[key])


class _Answer(dict):
    """The `answer` dict. Setting its content also tells rlmd at once, so that a run
    stopped by a limit in the middle of a block still has its latest draft."""

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key == "content" and value not in (None, ""):
            try:
                _call({"fn": "draft", "content": _clean(value)})
            except Exception:
                pass

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


_BUILTIN_FUNCTIONS = (
    llm_query,
    llm_query_batched,
    rlm_query,
    rlm_query_batched,
    SHOW_VARS,
    FINAL,
    FINAL_VAR,
)


def _load_context(fd, fmt):
    """The context held by the read-only file `fd` (closed here), read as `fmt`: "text" is
    a str, "json" one document, "jsonl" the list of one document per non-blank line. The
    file is mapped, not read: its bytes are decoded once, straight from the page cache."""
    try:
        if os.fstat(fd).st_size == 0:
            data = b""
        else:
            data = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        if fmt == "jsonl":
            records = []
            for line in iter(data.readline, b"") if data else ():
                if line.strip():
                    records.append(json.loads(line))
            return records
        text = str(data, "utf-8")
        return text if fmt == "text" else json.loads(text)
    finally:
        if not isinstance(data, bytes):
            data.close()


def init(context_fd, context_format, tools):
    """A fresh namespace around the context (the read-only file `context_fd`), with the
    run's tools defined in it. Returns one message per tool that failed to load."""
    global _ns, _reserved, _pinned
    _reserved = {fn.__name__: fn for fn in _BUILTIN_FUNCTIONS}
    _ns = {"__name__": "__main__", "__builtins__": builtins}
    _ns.update(_reserved)
    context = _load_context(context_fd, context_format)
    # context_0 is the first context, as in rlms; a session's turns add context_1, ...
    _pinned = {"context": context, "context_0": context}
    _ns.update(_pinned)
    _ns["answer"] = _Answer(content="", ready=False)
    sys.argv = ["repl"]
    signal.signal(_LIVE_SIGNAL, _on_live_timer)
    errors = []
    for name, source in tools:
        filename = f"<tool {name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), _ns)
        except BaseException as exc:
            errors.append(f"tool {name}: {type(exc).__name__}: {_describe(exc)}")
            continue
        if name not in _ns:
            errors.append(f"tool {name}: its source does not define {name}")
    # A tool's source may not replace a built-in.
    for name, value in {**_reserved, **_pinned}.items():
        _ns[name] = value
    if not isinstance(_ns.get("answer"), _Answer):
        _ns["answer"] = _Answer(content="", ready=False)
    return errors


class _LiveOutput:
    """What the running block prints, sent to the server while the block runs (every
    interval at most, and no more than the block's output limit in all), so that whoever
    follows the run sees progress. The full output still comes with the block's end.

    Sending is done by a thread that starts only once it is needed (see src/repl/live.rs):
    when a block is still running after one interval (a timer's signal), or when a block
    calls the server."""

    def __init__(self):
        self._lock = threading.Lock()
        # A deque: appends and pops are atomic, so a print never waits for the pipe and
        # nothing printed is lost between two sends.
        self._pending = collections.deque()
        self._left = 0
        self._active = False
        self._sending = False

    def begin(self, limit):
        with self._lock:
            self._pending.clear()
            self._left = limit
            self._active = True
        if not self._sending and not _live_timer(_LIVE_INTERVAL):
            self.start_sending()

    def start_sending(self):
        """From now on a thread sends, every interval, what was printed."""
        if not self._sending:
            self._sending = True
            _start_live_sender(self)

    def add(self, stream, text):
        if self._active and self._left > 0:
            piece = text[: self._left]
            self._left -= len(piece)
            self._pending.append((stream, piece))

    def end(self):
        """Stops sending. What is left is not sent live: the block's end, which goes out
        next, carries the whole output (a short block is then one message, not two)."""
        if not self._sending:
            _live_timer(0)
        with self._lock:
            self._pending.clear()
            self._active = False

    def tick(self):
        """Called by the sender every interval: False once the pipe is gone."""
        with self._lock:
            return not self._active or self._send()

    def _send(self):
        merged = []
        while self._pending:
            stream, text = self._pending.popleft()
            if merged and merged[-1][0] == stream:
                merged[-1][1].append(text)
            else:
                merged.append((stream, [text]))
        try:
            for stream, parts in merged:
                _emit(stream, _clean("".join(parts)))
        except Exception:
            return False
        return True


_live = _LiveOutput()


def _on_live_timer(signum, frame):
    # A block is still running one interval after it began: hand its output to a sender.
    if _live._active:
        _live.start_sending()


class _CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the first `limit` characters and counts the rest,
    so a runaway print loop cannot exhaust memory."""

    def __init__(self, limit, stream):
        self._stream = stream
        self._limit = limit
        self._parts = []
        self._kept = 0
        self._total = 0

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._total += len(text)
        _live.add(self._stream, text)
        room = self._limit - self._kept
        if room > 0:
            piece = text[:room]
            self._parts.append(piece)
            self._kept += len(piece)
        return len(text)

    def getvalue(self):
        text = _clean("".join(self._parts))
        cut = self._total - self._kept
        if cut > 0:
            text += f"\n... [output truncated: {cut} more characters not shown]"
        return text


def _print_user_traceback(exc, stream):
    # Drop the frames of this file so the model sees only its own code.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == run_block.__code__.co_filename:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=stream)


def _restore_builtins():
    # Model code may shadow a built-in or rebind a provided variable by accident; put them
    # back so later blocks work.
    for name, value in {**_reserved, **_pinned}.items():
        if _ns.get(name) is not value:
            _ns[name] = value
    answer = _ns.get("answer")
    if not isinstance(answer, dict):
        print(
            "note: `answer` must stay a dict; it was reset. "
            'Set answer["content"] and then answer["ready"] = True.',
            file=sys.stderr,
        )
        _ns["answer"] = _Answer(content="", ready=False)
    elif not isinstance(answer, _Answer):
        _ns["answer"] = _Answer(answer)


def _describe(value):
    """str(value), or something close, for any object: model code may define __str__ to raise."""
    try:
        return _clean(value)
    except BaseException:
        try:
            return _clean(repr(value))
        except BaseException:
            return f"<unprintable {type(value).__name__}>"


def _json_default(value):
    # numpy and pandas values stand for plain Python ones.
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _as_json(value):
    """JSON text of a value that is not a str (a typed answer), or None if it has none."""
    if isinstance(value, str):
        return None
    try:
        return _clean(json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default))
    except BaseException:
        return None


def _answer_content():
    """(text, JSON text or None, ready) of the answer as the code left it."""
    answer = _ns.get("answer")
    if not isinstance(answer, dict):
        return None, None, False
    try:
        ready = bool(answer.get("ready"))
        content = answer.get("content", "")
    except BaseException:
        return None, None, False
    return _describe(content), _as_json(content) if ready else None, ready


def run_block(code, limit):
    """Runs one block; returns (stdout, stderr, error, answer if submitted, draft answer,
    the submitted answer's JSON when it is not a str)."""
    global _blocks_run
    _blocks_run += 1
    filename = f"<repl block {_blocks_run}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    out, err = _CappedText(limit, "stdout"), _CappedText(limit, "stderr")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    _live.begin(limit)
    error = None
    try:
        tree = ast.parse(code, filename, "exec")
        # Like a notebook: the value of a bare last expression is shown.
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), _ns)
        if last is not None:
            value = eval(compile(last, filename, "eval"), _ns)
            if value is not None:
                print(repr(value))
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the model's too
        error = f"{type(exc).__name__}: {_describe(exc)}"
        try:
            _print_user_traceback(exc, err)
        except BaseException:
            err.write(f"{error}\n(the traceback could not be printed)\n")
    finally:
        _live.end()
        sys.stdout, sys.stderr = saved
    try:
        sys.stdout, sys.stderr = out, err
        _restore_builtins()
    finally:
        sys.stdout, sys.stderr = saved
    content, content_json, ready = _answer_content()
    return (
        out.getvalue(),
        err.getvalue(),
        error,
        content if ready else None,
        content or None,
        content_json,
    )


def set_context(names, fd, fmt):
    """Sets a session's `context` and `context_N` (kept from then on) to the context held
    by the read-only file `fd`: read once, whatever the number of names."""
    value = _load_context(fd, fmt)
    for name in names:
        _pinned[name] = value
        _ns[name] = value


def set_var(name, value_json):
    """Sets a variable the server provides: `history`, `history_N` (kept from then on), or
    a fresh `answer` for a new turn."""
    value = json.loads(value_json)
    if name == "answer":
        _ns["answer"] = _Answer(value)
        return
    _pinned[name] = value
    _ns[name] = value


def resolve(name):
    """The text of a variable, and its JSON when it is not a str, for FINAL_VAR(name)
    written outside a code block."""
    key = name.strip().strip("'\"")
    if _ns is None or key not in _ns:
        return None
    value = _ns[key]
    return _describe(value), _as_json(value)


def _warm_up():
    """Run by the zygote before it forks any REPL: runs a few blocks the way a REPL will,
    then forgets them. What a process does the first time it runs this code (specializing
    its bytecode, filling the type cache, interning names) is then done once, in pages the
    REPLs share, instead of in pages each REPL copies on write. No thread is started: the
    zygote must stay single-threaded to fork, and it has no server to call: the blocks'
    calls (a draft answer) get an empty reply."""
    global _ns, _reserved, _pinned, _blocks_run, _host
    host, _host = _host, lambda request: '{"ok": true, "value": null}'
    _live.begin = lambda limit: None
    _live.end = lambda: None
    fd = os.memfd_create("rlmd-warm-up")
    try:
        os.write(fd, b"warm")
        init(fd, "text", [])  # closes fd
        code = "x = len(context) + 1\nprint(x)\nanswer['content'] = str(x)\nanswer['ready'] = True"
        for _ in range(10):
            stdout, _, error, answer, _, _ = run_block(code, 1000)
            if (stdout, error, answer) != ("5\n", None, "5"):
                raise RuntimeError(f"the warm-up block failed: {error or stdout!r}")
            set_var("answer", '{"content": "", "ready": false}')
    finally:
        _host = host
        del _live.begin, _live.end
        _ns, _reserved, _pinned, _blocks_run = None, {}, {}, 0
        linecache.cache.clear()
