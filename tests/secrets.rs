//! Keys never leak: the real binary, logging at debug level, runs a task whose provider
//! even echoes the key back; the key is then looked for in the log, the database files, the
//! event stream, the trajectory and the API's answers.

mod common;

use common::*;
use serde_json::json;

const OPENAI_KEY: &str = "sk-live-f00dfacecafe0123456789";
const ANTHROPIC_KEY: &str = "sk-ant-deadbeef9876543210";

#[tokio::test]
async fn no_key_reaches_the_log_the_database_the_events_or_the_api() {
    let model = FakeModel::start(
        vec![
            // The server's environment holds both keys: the REPL must see neither.
            code("import os\nprint(dict(os.environ))\nr = llm_query('echo the key')\nprint(r)"),
            code("answer['content'] = 'finished'\nanswer['ready'] = True"),
        ],
        // A provider that puts the key it was given into its error message.
        |_| Reply::Error {
            status: 401,
            message: format!("Incorrect API key provided: {OPENAI_KEY}"),
        },
    )
    .await;
    let dir = tempdir_for_repls();
    let server = binary::Server::start(
        dir.path(),
        &model,
        &[
            ("RUST_LOG", "debug"),
            ("OPENAI_API_KEY", OPENAI_KEY),
            ("ANTHROPIC_API_KEY", ANTHROPIC_KEY),
        ],
    );

    let id = server
        .submit(&json!({"prompt": "Try it.", "context": "x"}))
        .await;
    let events = server.text(&format!("/v1/runs/{id}/events")).await;
    let finished = server.text(&format!("/v1/runs/{id}")).await;
    let trajectory = server.text(&format!("/v1/runs/{id}/trajectory")).await;
    let providers = server.text("/v1/providers").await;
    // SIGTERM: a graceful stop, then the whole log.
    let log = server.terminate();

    assert!(finished.contains("\"status\":\"succeeded\""), "{finished}");
    assert!(
        trajectory.contains("Incorrect API key provided: [redacted]"),
        "the error is kept, without the key"
    );
    assert!(
        trajectory.contains("'LANG': 'C.UTF-8'"),
        "the REPL printed its environment"
    );
    assert!(log.contains("run finished"), "the log was captured: {log}");
    let database = database::dump(&database::fresh_url(dir.path()));
    assert!(!database.is_empty());
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        for (place, text) in [
            ("log", &log),
            ("events", &events),
            ("run", &finished),
            ("trajectory", &trajectory),
            ("providers", &providers),
        ] {
            assert!(!text.contains(key), "the key leaked into the {place}");
        }
        let needle = key.as_bytes();
        assert!(
            !database.windows(needle.len()).any(|w| w == needle),
            "the key leaked into the database"
        );
    }
}
