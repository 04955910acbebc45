//! Child RLMs: `rlm_query` starts runs one level deeper, each with its own REPL, stored,
//! streamed and accounted as one tree.

mod common;

use std::time::Duration;

use common::fake_model::{SeenRequest, COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::{json, Value};

fn model_of(request: &SeenRequest) -> String {
    request.body["model"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Root code hands each item to a child; children shout their context back; grandchildren
/// (model "leaf") reverse it.
fn tree_script(request: &SeenRequest, _: usize) -> Reply {
    if !request.is_root() {
        return text(format!("plain llm: {}", request.last_user_text()));
    }
    match model_of(request).as_str() {
        "kid" => code("answer['content'] = context.upper()\nanswer['ready'] = True"),
        "mid" => code("inner = rlm_query(context + '!', model='leaf')\nanswer['content'] = 'mid(' + inner + ')'\nanswer['ready'] = True"),
        "leaf" => code("answer['content'] = context[::-1]\nanswer['ready'] = True"),
        "broken" => Reply::Error { status: 400, message: "this model is broken".into() },
        _ => {
            let question = request.messages()[1]["content"].as_str().unwrap_or_default().to_string();
            if question.contains("three kids") {
                code("r = rlm_query_batched([f'item {i}' for i in range(3)], model='kid')\nanswer['content'] = '|'.join(r)\nanswer['ready'] = True")
            } else if question.contains("deep") {
                code("answer['content'] = rlm_query('abc', model='mid')\nanswer['ready'] = True")
            } else if question.contains("broken kid") {
                code("answer['content'] = rlm_query('x', model='broken')\nanswer['ready'] = True")
            } else {
                code("answer['content'] = rlm_query('at the cap')\nanswer['ready'] = True")
            }
        }
    }
}

fn children(trajectory: &Value) -> Vec<Value> {
    trajectory["children"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Every model call in a trajectory tree.
fn all_calls(trajectory: &Value) -> Vec<Value> {
    let mut calls = trajectory["llm_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for child in children(trajectory) {
        calls.extend(all_calls(&child));
    }
    calls
}

#[tokio::test]
async fn batched_children_run_as_their_own_runs_and_answer_in_order() {
    let model = FakeModel::with_script(Duration::ZERO, tree_script).await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Ask three kids.", "model": "boss", "max_depth": 2}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "ITEM 0|ITEM 1|ITEM 2");
    let trajectory = app.trajectory(&id).await;
    let kids = children(&trajectory);
    assert_eq!(kids.len(), 3);
    let mut answers: Vec<String> = Vec::new();
    for kid in &kids {
        let kid_run = &kid["run"];
        assert_eq!(kid_run["status"], "succeeded");
        assert_eq!(kid_run["depth"], 1);
        assert_eq!(kid_run["parent_id"], id.as_str());
        assert_eq!(kid_run["root_id"], id.as_str());
        assert_eq!(kid_run["model"], "kid");
        assert_eq!(kid["iterations"].as_array().unwrap().len(), 1);
        answers.push(kid_run["answer"].as_str().unwrap().to_string());
    }
    answers.sort();
    assert_eq!(answers, ["ITEM 0", "ITEM 1", "ITEM 2"]);
    // A child is a run of its own: readable by id, not listed among the roots.
    let kid_id = kids[0]["run"]["id"].as_str().unwrap();
    assert_eq!(app.run(kid_id).await["status"], "succeeded");
    let (status, body) = app
        .post_raw(&format!("/v1/runs/{kid_id}/cancel"), "", "application/json")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("child_run"))
    );
    let (_, list) = app.get("/v1/runs").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);

    // The tree's totals are the sum of its calls, by model.
    let calls = all_calls(&trajectory);
    assert_eq!(calls.len(), 4);
    assert_eq!(run["tree"]["runs"], 4);
    assert_eq!(run["tree"]["usage"]["llm_calls"], 4);
    assert_eq!(run["tree"]["usage"]["input_tokens"], 4 * PROMPT_TOKENS);
    assert_eq!(run["tree"]["usage"]["output_tokens"], 4 * COMPLETION_TOKENS);
    assert_eq!(run["tree"]["usage_by_model"]["kid"]["llm_calls"], 3);
    assert_eq!(run["tree"]["usage_by_model"]["boss"]["llm_calls"], 1);
    assert_eq!(
        run["usage"]["llm_calls"], 1,
        "the root's own usage is its own calls"
    );
}

#[tokio::test]
async fn the_root_stream_carries_every_descendant_and_closes_after_the_root() {
    let model = FakeModel::with_script(Duration::ZERO, tree_script).await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Go deep.", "model": "boss", "max_depth": 3}))
        .await;
    let events = app.events(&id, None).await;
    let run = app.run(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "mid(!cba)");
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "gap in the tree's sequence"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last.event.as_str(), last.data["run_id"].as_str()),
        ("run.succeeded", Some(id.as_str()))
    );
    let depths: std::collections::BTreeSet<i64> = events
        .iter()
        .filter_map(|e| e.data["data"]["depth"].as_i64())
        .collect();
    assert_eq!(depths.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
    let runs: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e.data["run_id"].as_str())
        .collect();
    assert_eq!(
        runs.len(),
        3,
        "root, child and grandchild all stream on the root"
    );
    // Every event says how deep its run is, terminal ones included.
    for event in &events {
        let depth = event.data["data"]["depth"].as_i64();
        assert!(depth.is_some(), "{} has no depth", event.event);
    }
    let leaf_end = events
        .iter()
        .find(|e| e.event == "run.succeeded" && e.data["data"]["depth"] == 2);
    assert!(
        leaf_end.is_some(),
        "the grandchild's end is tagged with its depth"
    );
    for kind in ["child.started", "child.finished"] {
        assert_eq!(
            events.iter().filter(|e| e.event == kind).count(),
            2,
            "{kind}"
        );
    }
    // Each descendant ended before the root did.
    let succeeded = events.iter().filter(|e| e.event == "run.succeeded").count();
    assert_eq!(succeeded, 3);

    let trajectory = app.trajectory(&id).await;
    let mid = &children(&trajectory)[0];
    assert_eq!(mid["run"]["depth"], 1);
    let leaf = &children(mid)[0];
    assert_eq!(
        (leaf["run"]["depth"].clone(), leaf["run"]["answer"].clone()),
        (json!(2), json!("!cba"))
    );
    // A child's own stream holds only its own events.
    let mid_id = mid["run"]["id"].as_str().unwrap();
    let mid_events = app.events(mid_id, None).await;
    assert!(mid_events.iter().all(|e| e.data["run_id"] == mid_id));
    assert_eq!(mid_events.last().unwrap().event, "run.succeeded");
}

#[tokio::test]
async fn at_the_depth_cap_rlm_query_is_a_plain_sub_call() {
    let model = FakeModel::with_script(Duration::ZERO, tree_script).await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Stay flat.", "model": "boss"}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "plain llm: at the cap");
    assert_eq!(run["tree"]["runs"], 1);
}

#[tokio::test]
async fn a_failing_child_is_an_error_string_for_its_parent() {
    let model = FakeModel::with_script(Duration::ZERO, tree_script).await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Use the broken kid.", "model": "boss", "max_depth": 2}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let answer = run["answer"].as_str().unwrap();
    let trajectory = app.trajectory(&id).await;
    let kid = &children(&trajectory)[0]["run"];
    assert_eq!(kid["status"], "failed");
    assert_eq!(kid["error"]["code"], "provider_error");
    assert_eq!(
        answer,
        format!(
            "Error: the child run {} failed (provider_error): openai answered HTTP 400: this model is broken (invalid_request_error)",
            kid["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn cancelling_a_root_stops_every_descendant_at_once() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        match request.body["model"].as_str() {
            Some("kid") => code("rlm_query('deeper', model='grandkid')"),
            Some("grandkid") => code("import time\ntime.sleep(60)"),
            _ => code("rlm_query('start', model='kid')"),
        }
    })
    .await;
    let app = spawn_app(&model).await;
    let id = app
        .submit_ok(&json!({"prompt": "Three levels.", "max_depth": 3}))
        .await;
    // Wait until root, child and grandchild each have a REPL running.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while processes_in(&app.scratch) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never got three REPLs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = std::time::Instant::now();
    let (status, run) = app
        .post_raw(&format!("/v1/runs/{id}/cancel"), "", "application/json")
        .await;

    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        started.elapsed()
    );
    // Killed processes may take a moment to vanish; all must be gone within the second.
    while processes_in(&app.scratch) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a REPL of the tree survived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let trajectory = app.trajectory(&id).await;
    let kid = &children(&trajectory)[0];
    let grandkid = &children(kid)[0];
    assert_eq!(kid["run"]["status"], "cancelled");
    assert_eq!(grandkid["run"]["status"], "cancelled");
    let events = app.events(&id, None).await;
    assert_eq!(events.last().unwrap().event, "run.cancelled");
    assert_eq!(events.last().unwrap().data["run_id"], id.as_str());
    assert_eq!(
        events.iter().filter(|e| e.event == "run.cancelled").count(),
        3
    );
}

#[tokio::test]
async fn children_make_their_own_sub_calls_over_several_turns() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text(format!("sub({})", request.last_user_text()));
        }
        match (request.body["model"].as_str(), request.turn()) {
            (Some("kid"), 1) => code("r = llm_query(context)\nprint(r)"),
            (Some("kid"), _) => code("answer['content'] = r\nanswer['ready'] = True"),
            (_, 1) => code("r = rlm_query_batched(['a', 'b'], model='kid')\nprint(r)"),
            _ => code("answer['content'] = '+'.join(r)\nanswer['ready'] = True"),
        }
    })
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Two kids.", "max_depth": 2}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "sub(a)+sub(b)",
        "{}",
        app.trajectory(&id).await
    );
    assert_eq!(run["tree"]["usage"]["llm_calls"], 2 + 2 * 3);
}

#[tokio::test]
async fn tree_cost_is_the_sum_of_every_call_priced_by_the_table_or_the_provider() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            // A provider that reports its own cost (as OpenRouter does) is believed.
            let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "priced"},
                               "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.25}});
            return Reply::Raw { status: 200, headers: vec![], body: body.to_string() };
        }
        match request.body["model"].as_str() {
            Some("kid") => code("answer['content'] = llm_query('price me')\nanswer['ready'] = True"),
            _ => code("answer['content'] = '|'.join(rlm_query_batched(['x', 'y'], model='kid'))\nanswer['ready'] = True"),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(&prices, r#"{"models": {"boss": {"input": 10.0, "output": 20.0}, "kid": {"input": 1.0, "output": 2.0}}}"#).unwrap();
    let app = spawn_app_with(&model, &[("RLM_PRICES_FILE", prices.to_str().unwrap())]).await;

    let id = app
        .submit_ok(&json!({"prompt": "Price it.", "model": "boss", "max_depth": 2}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let calls = all_calls(&app.trajectory(&id).await);
    let sum: f64 = calls.iter().map(|c| c["cost_usd"].as_f64().unwrap()).sum();
    // boss: 100 in at $10/M + 7 out at $20/M; each kid the same at $1/$2; each sub-call $0.25.
    let expected =
        (100.0 * 10.0 + 7.0 * 20.0) / 1e6 + 2.0 * (100.0 * 1.0 + 7.0 * 2.0) / 1e6 + 2.0 * 0.25;
    assert!(
        (sum - expected).abs() < 1e-12,
        "calls sum to {sum}, expected {expected}"
    );
    let tree_cost = run["tree"]["usage"]["cost_usd"].as_f64().unwrap();
    assert!((tree_cost - expected).abs() < 1e-12, "tree {tree_cost}");
    let kid_cost = run["tree"]["usage_by_model"]["kid"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(
        (kid_cost - (2.0 * 114.0 / 1e6 + 0.5)).abs() < 1e-12,
        "kid {kid_cost}"
    );
    assert!(
        (run["cost_usd"].as_f64().unwrap() - 1140.0 / 1e6).abs() < 1e-12,
        "the root's own cost"
    );
}
