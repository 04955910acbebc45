//! What can be known at submit about whether the REPL will take a run, checked before
//! anything is stored or any model is paid: every tool compiles, and the context is one
//! that Python's `json.loads` can rebuild.

use pyo3::exceptions::PySyntaxError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::error::ApiError;
use crate::domain::Tool;
use crate::store::NewRun;

/// Deepest nesting of lists and objects accepted in a context. The REPL (Python 3.11,
/// recursion limit 1000) rebuilds it with `json.loads`, whose C decoder spends one level of
/// the limit per nested container: it fails at about 990 levels (measured: 990 loads, 995
/// raises RecursionError). Code that walks the context recursively fails sooner:
/// `copy.deepcopy`, two frames a level, at about 495 (490 copies, 500 raises). 400 leaves
/// room for either and the frames around it.
pub const MAX_CONTEXT_DEPTH: usize = 400;

/// Python 3.11 refuses to read an int of more than 4300 decimal digits
/// (`sys.int_info.default_max_str_digits`), so `json.loads` fails on one; floats of any
/// length, and huge numbers in range, are fine.
pub const MAX_INT_DIGITS: usize = 4300;

/// Bytes of tool source compiled per list: compiling costs CPU on every submit.
pub const MAX_TOOLS_SOURCE_BYTES: usize = 1_000_000;

/// Checks the run's tools and context off the async runtime (a context may be tens of
/// megabytes, and compiling holds Python's lock). Gives the run back when it passes.
pub async fn check(new_run: NewRun) -> Result<NewRun, ApiError> {
    tokio::task::spawn_blocking(move || {
        check_context(&new_run.context_json)
            .map_err(|message| ApiError::bad_request("invalid_context", message))?;
        let spec = &new_run.spec;
        compile_tools(&spec.tools, "tools")?;
        if let Some(sub_tools) = &spec.sub_tools {
            compile_tools(sub_tools, "sub_tools")?;
        }
        Ok(new_run)
    })
    .await
    .map_err(|error| ApiError::Internal(format!("the submit check failed: {error}")))?
}

/// Compiles (never runs) each tool as the REPL will: `compile(source, "<tool NAME>", "exec")`.
fn compile_tools(tools: &[Tool], field: &str) -> Result<(), ApiError> {
    if tools.is_empty() {
        // Most runs have none: Python is not even started in the server for them.
        return Ok(());
    }
    let invalid = |message: String| ApiError::bad_request("invalid_tool", message);
    let total: usize = tools.iter().map(|t| t.source.len()).sum();
    if total > MAX_TOOLS_SOURCE_BYTES {
        return Err(invalid(format!(
            "the sources of `{field}` come to {total} bytes; at most {MAX_TOOLS_SOURCE_BYTES} are accepted"
        )));
    }
    Python::with_gil(|py| {
        let compile = PyModule::import(py, "builtins")
            .and_then(|builtins| builtins.getattr("compile"))
            .map_err(|error| ApiError::Internal(format!("Python has no compile(): {error}")))?;
        for tool in tools {
            let filename = format!("<tool {}>", tool.name);
            if let Err(error) = compile.call1((&tool.source, filename, "exec")) {
                return Err(invalid(format!(
                    "tool {}: {}",
                    tool.name,
                    describe(py, &error)
                )));
            }
        }
        Ok(())
    })
}

/// "SyntaxError at line 2: invalid syntax", or the exception as the REPL describes it.
fn describe(py: Python<'_>, error: &PyErr) -> String {
    if !error.is_instance_of::<PySyntaxError>(py) {
        return crate::repl::child::describe(py, error);
    }
    let value = error.value(py);
    let line: Option<i64> = value
        .getattr("lineno")
        .and_then(|l| l.extract())
        .ok()
        .flatten();
    let message: String = value
        .getattr("msg")
        .and_then(|m| m.extract())
        .unwrap_or_else(|_| value.to_string());
    match line {
        Some(line) => format!("SyntaxError at line {line}: {message}"),
        None => format!("SyntaxError: {message}"),
    }
}

/// Finds what valid JSON (serde_json has read it already) Python cannot rebuild: nesting
/// deeper than `MAX_CONTEXT_DEPTH`, or an integer longer than `MAX_INT_DIGITS` digits.
fn check_context(json: &str) -> Result<(), String> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_CONTEXT_DEPTH {
                    return Err(format!(
                        "`context` is nested more than {MAX_CONTEXT_DEPTH} levels deep; \
                         the REPL cannot load it"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let start = i + usize::from(byte == b'-');
                let end = start
                    + bytes[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                let is_int = !matches!(bytes.get(end), Some(b'.' | b'e' | b'E'));
                if is_int && end - start > MAX_INT_DIGITS {
                    return Err(format!(
                        "`context` holds an integer of {} digits; Python reads at most \
                         {MAX_INT_DIGITS} (send it as a string)",
                        end - start
                    ));
                }
                // The fraction or exponent, if any, is skipped as ordinary bytes.
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn nesting_is_bounded_outside_strings_only() {
        assert!(check_context(&nested(MAX_CONTEXT_DEPTH)).is_ok());
        assert!(check_context(&nested(MAX_CONTEXT_DEPTH + 1)).is_err());
        let text = serde_json::to_string(&"[{".repeat(2000)).unwrap();
        assert!(check_context(&text).is_ok());
        let escaped = format!("[\"\\\"{}\"]", "[".repeat(1000));
        assert!(check_context(&escaped).is_ok());
    }

    #[test]
    fn long_integers_are_refused_and_long_floats_are_not() {
        let digits = |n: usize| "7".repeat(n);
        assert!(check_context(&format!("[{}]", digits(4300))).is_ok());
        assert!(check_context(&format!("[-{}]", digits(4300))).is_ok());
        assert!(check_context(&format!("[{}]", digits(4301))).is_err());
        assert!(check_context(&format!("{{\"a\": -{}}}", digits(5000))).is_err());
        assert!(check_context(&format!("[{}.5]", digits(5000))).is_ok());
        assert!(check_context(&format!("[{}e3, 1]", digits(5000))).is_ok());
        assert!(check_context(&format!("[\"{}\"]", digits(5000))).is_ok());
    }

    #[test]
    fn tools_that_do_not_compile_are_named_with_their_line() {
        let tool = |name: &str, source: &str| Tool {
            name: name.into(),
            description: "d".into(),
            source: source.into(),
        };
        let good = tool("good", "def good():\n    return 1\n");
        assert!(compile_tools(std::slice::from_ref(&good), "tools").is_ok());
        let bad = tool("bad", "x = 1\ndef bad(:\n    pass\n");
        let Err(ApiError::BadRequest { code, message }) = compile_tools(&[good, bad], "tools")
        else {
            panic!("a syntax error was accepted");
        };
        assert_eq!(code, "invalid_tool");
        assert!(
            message.starts_with("tool bad: SyntaxError at line 2: "),
            "{message}"
        );
        // Compiling runs nothing.
        let runs = tool("runs", "import os\nos._exit(3)\n");
        assert!(compile_tools(&[runs], "tools").is_ok());
    }
}
