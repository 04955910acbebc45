# The REPL side of rlmd, loaded into the sandboxed child before any model code runs.
# It builds the namespace the model sees and runs its code blocks. Model calls go through
# `_host`, which rlmd's child process provides: it sends the request over the pipe to the
# server, which makes the call; API keys never enter this process.

import ast
import builtins
import io
import json
import linecache
import sys
import traceback

_host = None  # set by the child process before init()
_ns = None
_reserved = {}
_blocks_run = 0


def _call(request):
    reply = json.loads(_host(json.dumps(request)))
    if not reply["ok"]:
        raise RuntimeError(reply["value"])
    return reply["value"]


def _as_prompt(prompt):
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, dict)):
        return json.dumps(prompt, ensure_ascii=False, default=str)
    return str(prompt)


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


def rlm_query(prompt, model=None):
    """Hand a sub-task to a child RLM with its own REPL (an llm_query at the depth limit)."""
    return _call({"fn": "rlm_query", "prompt": _as_prompt(prompt), "model": _model(model)})


def rlm_query_batched(prompts, model=None):
    """Several child RLMs at once; answers come back in the order of the prompts."""
    prompts = _as_prompts(prompts, "rlm_query_batched")
    if not prompts:
        return []
    return _call({"fn": "rlm_query_batched", "prompts": prompts, "model": _model(model)})


def SHOW_VARS():
    """The variables defined so far, with their types."""
    names = {
        name: type(value).__name__
        for name, value in _ns.items()
        if not name.startswith("_") and name not in _reserved and name != "answer"
    }
    if not names:
        return "No variables yet besides the built-ins (context, answer, llm_query, ...)."
    return "Variables: " + ", ".join(f"{name}: {kind}" for name, kind in names.items())


def FINAL(value):
    """Submit `value` as the final answer (same as setting answer['content'] and ['ready'])."""
    _ns["answer"] = _Answer(content=value if isinstance(value, str) else str(value), ready=True)
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
                _call({"fn": "draft", "content": value if isinstance(value, str) else str(value)})
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


def init(context_json, tools):
    """A fresh namespace around the context, exactly as it was submitted, with the run's
    tools defined in it. Returns one message per tool that failed to load."""
    global _ns, _reserved
    _reserved = {fn.__name__: fn for fn in _BUILTIN_FUNCTIONS}
    _ns = {"__name__": "__main__", "__builtins__": builtins}
    _ns.update(_reserved)
    _ns["context"] = json.loads(context_json)
    _ns["answer"] = _Answer(content="", ready=False)
    sys.argv = ["repl"]
    errors = []
    for name, source in tools:
        filename = f"<tool {name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), _ns)
        except BaseException as exc:
            errors.append(f"tool {name}: {type(exc).__name__}: {exc}")
            continue
        if name not in _ns:
            errors.append(f"tool {name}: its source does not define {name}")
    # A tool's source may not replace a built-in.
    for name, fn in _reserved.items():
        _ns[name] = fn
    if not isinstance(_ns.get("answer"), _Answer):
        _ns["answer"] = _Answer(content="", ready=False)
    return errors


class _CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the first `limit` characters and counts the rest,
    so a runaway print loop cannot exhaust memory."""

    def __init__(self, limit):
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
        room = self._limit - self._kept
        if room > 0:
            piece = text[:room]
            self._parts.append(piece)
            self._kept += len(piece)
        return len(text)

    def getvalue(self):
        text = "".join(self._parts)
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
    # Model code may shadow a built-in by accident; put it back so later blocks work.
    for name, fn in _reserved.items():
        if _ns.get(name) is not fn:
            _ns[name] = fn
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


def _answer_content():
    answer = _ns.get("answer")
    if not isinstance(answer, dict):
        return None, False
    content = answer.get("content", "")
    content = content if isinstance(content, str) else str(content)
    return content, bool(answer.get("ready"))


def run_block(code, limit):
    """Runs one block; returns (stdout, stderr, error, answer if submitted, draft answer)."""
    global _blocks_run
    _blocks_run += 1
    filename = f"<repl block {_blocks_run}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    out, err = _CappedText(limit), _CappedText(limit)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
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
        error = f"{type(exc).__name__}: {exc}"
        _print_user_traceback(exc, err)
    finally:
        sys.stdout, sys.stderr = saved
    try:
        sys.stdout, sys.stderr = out, err
        _restore_builtins()
    finally:
        sys.stdout, sys.stderr = saved
    content, ready = _answer_content()
    return (
        out.getvalue(),
        err.getvalue(),
        error,
        content if ready else None,
        content or None,
    )


def set_var(name, value_json):
    """Sets a variable the server provides (`history`)."""
    _ns[name] = json.loads(value_json)


def resolve(name):
    """The text of a variable, for FINAL_VAR(name) written outside a code block."""
    key = name.strip().strip("'\"")
    if _ns is None or key not in _ns:
        return None
    value = _ns[key]
    return value if isinstance(value, str) else str(value)
