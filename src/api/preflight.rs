//! What can be known at submit about whether the REPL will take a run, checked before
//! anything is stored or any model is paid: every tool compiles. (Whether the REPL can
//! load the context is the context scan's to say: see `contexts::scan`.)

use pyo3::exceptions::PySyntaxError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::error::ApiError;
use crate::domain::Tool;
use crate::store::NewRun;

/// Bytes of tool source compiled per list: compiling costs CPU on every submit.
pub const MAX_TOOLS_SOURCE_BYTES: usize = 1_000_000;

/// Checks the run's tools off the async runtime (compiling holds Python's lock). Gives the
/// run back when it passes.
pub async fn check(new_run: NewRun) -> Result<NewRun, ApiError> {
    if new_run.spec.tools.is_empty() && new_run.spec.sub_tools.as_ref().is_none_or(Vec::is_empty) {
        return Ok(new_run);
    }
    tokio::task::spawn_blocking(move || {
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

#[cfg(test)]
mod tests {
    use super::*;

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
