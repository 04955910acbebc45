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
