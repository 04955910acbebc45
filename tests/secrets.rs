//! Keys never leak: the real binary, logging at debug level, runs a task whose provider
//! even echoes the key back; the key is then looked for in the log, the database files, the
//! event stream, the trajectory and the API's answers.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

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
    let db = dir.path().join("rlmd.db");
    let mut server = Command::new(env!("CARGO_BIN_EXE_rlmd"))
        .arg("serve")
        .env("RUST_LOG", "debug")
        .env("RLM_BIND", "127.0.0.1:0")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("RLM_SCRATCH_DIR", dir.path().join("scratch"))
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("OPENAI_BASE_URL", &model.base_url)
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("RLM_PROVIDER_MAX_RETRIES", "0")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The log says where the server listens; keep every line for the search.
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut log = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited: {log}"
        );
        log.push_str(&line);
        if let Some(at) = line.find("address=") {
            break line[at + "address=".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
        }
    };
    let base = format!("http://{address}");
    let client = reqwest::Client::new();

    let run: Value = client
        .post(format!("{base}/v1/runs"))
        .json(&json!({"prompt": "Try it.", "context": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    let events = client
        .get(format!("{base}/v1/runs/{id}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let finished = client
        .get(format!("{base}/v1/runs/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let trajectory = client
        .get(format!("{base}/v1/runs/{id}/trajectory"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let providers = client
        .get(format!("{base}/v1/providers"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // SIGTERM: a graceful stop, then the rest of the log.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    stderr.read_to_string(&mut log).unwrap();

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
    let mut database = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(bytes) = std::fs::read(format!("{}{suffix}", db.display())) {
            database.extend(bytes);
        }
    }
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
