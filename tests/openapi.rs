//! `GET /openapi.json`: an OpenAPI 3.1 document generated from the code, valid (checked by
//! openapi-spec-validator), naming every route, and true: schemathesis, a schema-driven
//! fuzzer, sends every operation hundreds of generated requests and checks that none gets
//! a 5xx and that every answer fits its documented status, content type and schema.

mod common;

use common::clients::python;
use common::*;

async fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_and_names_every_route() {
    let model = FakeModel::start(vec![text("FINAL(ok)")], |_| text("ok")).await;
    let app = spawn_app(&model).await;

    let (status, document) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/runs", &["get", "post"][..]),
        ("/v1/runs/{id}", &["get"]),
        ("/v1/runs/{id}/events", &["get"]),
        ("/v1/runs/{id}/trajectory", &["get"]),
        ("/v1/runs/{id}/cancel", &["post"]),
        ("/v1/contexts", &["get", "post"]),
        ("/v1/contexts/{id}", &["get", "delete"]),
        ("/v1/sessions", &["get", "post"]),
        ("/v1/sessions/{id}", &["get", "delete"]),
        ("/v1/sessions/{id}/runs", &["post"]),
        ("/v1/comparisons", &["get", "post"]),
        ("/v1/comparisons/{id}", &["get"]),
        ("/v1/providers", &["get"]),
        ("/v1/chat/completions", &["post"]),
        ("/v1/models", &["get"]),
        ("/v1/models/{id}", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/docs", &["get"]),
    ] {
        for method in methods {
            assert!(
                paths[path].get(method).is_some(),
                "{method} {path} is not documented"
            );
        }
    }
    let schemas = &document["components"]["schemas"];
    let error = &schemas["ErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
    let submit = &schemas["SubmitRun"]["properties"];
    assert!(
        submit["prompt"].is_object() && submit["webhook"].is_object(),
        "{submit}"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), document.to_string()).unwrap();
    let path = file.path().to_str().unwrap();
    let (valid, report) = run(&python(), &["-m", "openapi_spec_validator", path]).await;
    assert!(valid, "{report}");

    // The page that shows it loads nothing from elsewhere.
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside asset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_driven_fuzzer_finds_no_server_error_and_no_undocumented_answer() {
    // Every run the fuzzer makes ends at once: the model answers at its first turn.
    let model = FakeModel::start(vec![text("FINAL(ok)")], |_| text("ok")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "2")]).await;
    let schemathesis = python().replace("/python", "/schemathesis");
    let url = app.url("/openapi.json");

    let (passed, report) = run(
        &schemathesis,
        &[
            "run",
            &url,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            // The same cases every time, so that a failure is one to reproduce, not luck.
            "--seed",
            "20261201",
            "--no-color",
        ],
    )
    .await;

    assert!(passed, "{report}");
    assert!(report.contains("passed"), "{report}");
    let (_, runs) = app.get("/v1/runs?limit=1").await;
    assert!(
        runs["runs"].as_array().is_some_and(|r| !r.is_empty()),
        "the fuzzer reached the core: it made runs"
    );
}
