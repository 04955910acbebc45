//! The OpenAI-compatible endpoint, driven by OpenAI's own Python SDK (installed by
//! scripts/test.sh in a virtual environment; `RLMD_TEST_PYTHON` names its Python).

mod common;

use common::fake_model::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::Value;

/// Runs tests/clients/openai_chat.py CASE against `app`; what it printed.
async fn sdk(app: &TestApp, case: &str) -> Value {
    common::clients::run_script("openai_chat.py", &[&app.address, case]).await
}

fn summing_model_script() -> Vec<Reply> {
    vec![
        code("total = sum(context)\nprint(llm_query(f'Say {total}'))"),
        code("answer['content'] = str(total)\nanswer['ready'] = True"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_gets_a_whole_completion() {
    let model = FakeModel::start(summing_model_script(), |_| text("42")).await;
    let app = spawn_app(&model).await;

    let got = sdk(&app, "whole").await;

    assert_eq!(got["content"], "42");
    assert_eq!(got["role"], "assistant");
    assert_eq!(got["object"], "chat.completion");
    assert_eq!(got["model"], "rlm");
    assert_eq!(got["finish_reason"], "stop");
    let run = app.run(got["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded", "`id` is the run's: {run}");
    assert_eq!(run["max_iterations"], 5, "extra_body reaches the run");
    // The whole tree's tokens: two root calls and one sub-call.
    assert_eq!(got["usage"]["prompt_tokens"], 3 * PROMPT_TOKENS);
    assert_eq!(got["usage"]["completion_tokens"], 3 * COMPLETION_TOKENS);
    assert_eq!(
        got["usage"]["total_tokens"],
        3 * (PROMPT_TOKENS + COMPLETION_TOKENS)
    );
    let first_root = &model.root_requests()[0];
    assert!(
        first_root
            .last_user_text()
            .contains("What is the sum of the numbers?"),
        "the last user message is the prompt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_streams_reasoning_then_the_answer() {
    let model = FakeModel::start(
        vec![
            code("total = len(context)\nprint('messages:', total)"),
            code("answer['content'] = 'There were ' + str(total) + ' earlier messages.'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let got = sdk(&app, "streamed").await;

    assert_eq!(got["content"], "There were 3 earlier messages.");
    assert_eq!(got["finish_reason"], "stop");
    let ids = got["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "every chunk carries the run's id");
    let run = app.run(ids[0].as_str().unwrap()).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        run["model"], "gpt-4o-mini",
        "rlm:openai/gpt-4o-mini picks the model"
    );
    let reasoning = got["reasoning"].as_str().unwrap();
    assert!(reasoning.contains("Iteration 1"), "{reasoning}");
    assert!(reasoning.contains("Iteration 2"), "{reasoning}");
    assert!(
        reasoning.contains("total = len(context)"),
        "the code: {reasoning}"
    );
    assert!(reasoning.contains("messages: 3"), "its output: {reasoning}");
    assert_eq!(got["usage"]["prompt_tokens"], 2 * PROMPT_TOKENS);
    assert_eq!(got["usage"]["completion_tokens"], 2 * COMPLETION_TOKENS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_reads_errors_in_its_own_shape() {
    let model = FakeModel::start(vec![], |_| text("I will not write code.")).await;
    let app = spawn_app(&model).await;

    let got = sdk(&app, "errors").await;

    assert_eq!(got["unknown_model"]["status"], 404, "{got}");
    assert_eq!(got["unknown_model"]["code"], "model_not_found");
    assert_eq!(got["n"]["status"], 400);
    assert_eq!(got["n"]["type"], "invalid_request_error");
    assert_eq!(got["failed_run"]["status"], 422, "{got}");
    let (_, runs) = app.get("/v1/runs?status=failed").await;
    let code = runs["runs"][0]["error"]["code"].clone();
    assert!(code.is_string(), "{runs}");
    assert_eq!(got["failed_run"]["code"], code);
    assert_eq!(got["failed_stream"]["code"], code);
    let models = got["models"].as_array().unwrap();
    assert_eq!(models[0], "rlm");
    assert!(
        models.contains(&Value::from("rlm:openai/gpt-4o-mini")),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_parses_a_typed_answer_into_its_pydantic_model() {
    let model = FakeModel::start(
        vec![
            // Not the shape yet: sent back with what failed, then fixed.
            code("answer['content'] = {'name': 'Grace'}\nanswer['ready'] = True"),
            code("answer['content']['age'] = 85\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let got = sdk(&app, "parsed").await;

    assert_eq!(got["type"], "Person", "{got}");
    assert_eq!(
        got["parsed"],
        serde_json::json!({"name": "Grace", "age": 85})
    );
    let run = app.run(got["id"].as_str().unwrap()).await;
    assert_eq!(run["iterations"], 2, "{run}");
    // The SDK's strict schema reached the run as its answer schema.
    assert_eq!(run["answer_schema"]["additionalProperties"], false, "{run}");
    let feedback = model.root_requests()[1].last_user_text();
    assert!(
        feedback.contains("\"age\" is a required property"),
        "{feedback}"
    );
}
