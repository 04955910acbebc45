//! The real clients some tests drive (OpenAI's SDK, schemathesis), from the virtual
//! environment scripts/test.sh installs (`RLMD_TEST_PYTHON` names its Python).

/// The Python of the clients' virtual environment.
pub fn python() -> String {
    let python = std::env::var("RLMD_TEST_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/target/clients-venv/bin/python",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    assert!(
        std::path::Path::new(&python).exists(),
        "no test clients at {python}: run scripts/test.sh, which installs them"
    );
    python
}

/// Runs `tests/clients/{script}` with `args` in the clients' Python and returns the one JSON
/// object it prints; panics with its output if it fails.
pub async fn run_script(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
