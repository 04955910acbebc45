//! `GET /v1/runs/{id}/trajectory?format=rlms`: a recursive run as the `rlms` logger writes
//! it, checked field by field against that logger's schema.

mod common;

use common::fake_model::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::{json, Value};

async fn export(app: &TestApp, id: &str) -> (u16, String, String) {
    let response = app
        .client
        .get(app.url(&format!("/v1/runs/{id}/trajectory?format=rlms")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn a_recursive_run_exports_as_the_rlms_logger_writes() {
    let model = FakeModel::with_script(std::time::Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text("hi");
        }
        // Children run on the sub-model.
        let is_child = request.body["model"] == "kid";
        match (is_child, request.turn()) {
            (true, _) => code("answer['content'] = str(2 + 3)\nanswer['ready'] = True"),
            (false, 1) => {
                code("s = llm_query('Say hi.')\nc = rlm_query('What is 2 + 3?')\nprint(s, c)")
            }
            (false, _) => code("answer['content'] = 'root: ' + c\nanswer['ready'] = True"),
        }
    })
    .await;
    let app = spawn_app(&model).await;
    let body = json!({"prompt": "Ask a child.", "context": "some context", "max_depth": 2,
                      "sub_model": "kid", "max_iterations": 4, "sampling": {"temperature": 0.5}});
    let id = app.submit_ok(&body).await;
    assert_eq!(app.wait_for_end(&id).await["answer"], "root: 5");

    let (status, content_type, jsonl) = export(&app, &id).await;
    assert_eq!(status, 200, "{jsonl}");
    assert_eq!(content_type, "application/x-ndjson");
    assert!(jsonl.ends_with('\n'));
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "metadata and two iterations");
    assert!(!jsonl.contains(TEST_API_KEY), "no key anywhere");

    let meta = &lines[0];
    assert_eq!(meta["type"], "metadata");
    assert!(meta["timestamp"].as_str().unwrap().contains('T'));
    assert_eq!(meta["root_model"], "gpt-4o-mini");
    assert_eq!(meta["max_depth"], 2);
    assert_eq!(meta["max_iterations"], 4);
    assert_eq!(meta["backend"], "openai");
    assert_eq!(meta["backend_kwargs"]["model_name"], "gpt-4o-mini");
    assert_eq!(meta["backend_kwargs"]["temperature"], 0.5);
    assert!(meta["environment_type"].is_string());
    assert!(meta["environment_kwargs"].is_object());
    assert!(!meta["environment_kwargs"]
        .to_string()
        .contains("some context"));
    assert_eq!(
        meta["other_backends"],
        json!(["openai"]),
        "the sub-model's backend"
    );

    // Every root call of the root run, in order: the exact messages the model received.
    let seen: Vec<Vec<Value>> = model
        .root_requests()
        .iter()
        .filter(|r| r.body["model"] == "gpt-4o-mini")
        .map(|r| r.messages())
        .collect();
    assert_eq!(seen.len(), 2);

    let first = &lines[1];
    assert_eq!(first["type"], "iteration");
    assert_eq!(first["iteration"], 1);
    assert!(first["timestamp"].is_string());
    assert_eq!(
        first["prompt"],
        json!(seen[0]),
        "the full message list of turn 1"
    );
    assert!(first["response"].as_str().unwrap().contains("rlm_query"));
    assert_eq!(first["final_answer"], Value::Null);
    assert!(first["iteration_time"].as_f64().unwrap() >= 0.0);
    let blocks = first["code_blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0]["code"]
        .as_str()
        .unwrap()
        .starts_with("s = llm_query"));
    let result = &blocks[0]["result"];
    assert_eq!(result["stdout"], "hi 5\n");
    assert_eq!(result["stderr"], "");
    assert_eq!(
        result["locals"],
        json!({}),
        "never the namespace (the context among it)"
    );
    assert!(result["execution_time"].as_f64().unwrap() > 0.0);
    let calls = result["rlm_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");

    let sub = &calls[0];
    assert_eq!(sub["root_model"], "kid");
    assert_eq!(sub["prompt"], "Say hi.");
    assert_eq!(sub["response"], "hi");
    let usage = &sub["usage_summary"]["model_usage_summaries"]["kid"];
    assert_eq!(usage["total_calls"], 1);
    assert_eq!(usage["total_input_tokens"], PROMPT_TOKENS);
    assert_eq!(usage["total_output_tokens"], COMPLETION_TOKENS);
    assert!(sub["execution_time"].is_number());

    let child = &calls[1];
    assert_eq!(child["root_model"], "kid");
    assert_eq!(child["prompt"], "What is 2 + 3?");
    assert_eq!(child["response"], "5");
    assert_eq!(
        child["usage_summary"]["model_usage_summaries"]["kid"]["total_calls"],
        1
    );
    let trajectory = &child["metadata"];
    assert_eq!(trajectory["run_metadata"]["root_model"], "kid");
    assert_eq!(trajectory["run_metadata"]["max_depth"], 2);
    let child_iterations = trajectory["iterations"].as_array().unwrap();
    assert_eq!(child_iterations.len(), 1);
    assert_eq!(child_iterations[0]["type"], "iteration");
    assert_eq!(child_iterations[0]["final_answer"], "5");
    let child_prompt = child_iterations[0]["prompt"].as_array().unwrap();
    assert_eq!(child_prompt[0]["role"], "system");
    assert_eq!(
        child_prompt.len(),
        2,
        "the child's first turn: system and its opening"
    );

    let second = &lines[2];
    assert_eq!(second["iteration"], 2);
    assert_eq!(
        second["prompt"],
        json!(seen[1]),
        "the full message list of turn 2"
    );
    assert_eq!(second["final_answer"], "root: 5");
    assert_eq!(second["code_blocks"][0]["result"]["rlm_calls"], json!([]));
}

#[tokio::test]
async fn a_call_is_shown_whole_with_the_exact_messages_it_sent() {
    let model = FakeModel::start(
        vec![
            code("print(llm_query('Say hi.'))"),
            code("answer['content'] = 'done'\nanswer['ready'] = True"),
        ],
        |_| text("hi"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&task("Greet.", json!("c"))).await;
    app.wait_for_end(&id).await;
    let trajectory = app.trajectory(&id).await;
    let calls = trajectory["llm_calls"].as_array().unwrap();
    let index_of = |kind: &str, iteration: u64| {
        calls
            .iter()
            .find(|c| c["kind"] == kind && c["iteration"] == iteration)
            .map(|c| c["index"].as_u64().unwrap())
            .unwrap()
    };

    let second = index_of("root", 2);
    let (status, call) = app.get(&format!("/v1/runs/{id}/calls/{second}")).await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["kind"], "root");
    assert_eq!(call["messages"], json!(model.root_requests()[1].messages()));
    let sub = index_of("sub", 1);
    let (_, call) = app.get(&format!("/v1/runs/{id}/calls/{sub}")).await;
    assert_eq!(
        call["messages"],
        json!([{"role": "user", "content": "Say hi."}])
    );
    assert_eq!(call["reply"], "hi");
    assert_eq!(
        call["block"],
        trajectory["iterations"][0]["code_blocks"][0]["index"]
    );

    for missing in ["99", "x", "-1"] {
        let (status, body) = app.get(&format!("/v1/runs/{id}/calls/{missing}")).await;
        assert_eq!(status, 404, "{missing}: {body}");
    }
}

#[tokio::test]
async fn an_unknown_format_is_refused() {
    let model = FakeModel::start(vec![text("FINAL(x)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&task("p", json!("c"))).await;
    app.wait_for_end(&id).await;
    let (status, body) = app
        .get(&format!("/v1/runs/{id}/trajectory?format=xml"))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .get(&format!("/v1/runs/{id}/trajectory?format=json"))
        .await;
    assert_eq!((status, &body["run"]["id"]), (200, &json!(id)));
}
