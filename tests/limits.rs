//! Tree-wide, hard limits: each trips exactly when it should, with its reason and the best
//! partial answer, and stops every run of the tree at once.

mod common;

use std::time::{Duration, Instant};

use common::fake_model::SeenRequest;
use common::*;
use serde_json::{json, Value};

/// Each turn writes a draft answer and goes on; it never submits.
fn plodding(request: &SeenRequest, _: usize) -> Reply {
    if !request.is_root() {
        return text("sub");
    }
    let turn = request.turn();
    code(&format!(
        "answer['content'] = 'draft {turn}'\nprint({turn})"
    ))
}

async fn run_with_limits(
    script: fn(&SeenRequest, usize) -> Reply,
    body: Value,
) -> (FakeModel, Value) {
    let model = FakeModel::with_script(Duration::ZERO, script).await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    (model, run)
}

#[tokio::test]
async fn max_llm_calls_allows_exactly_that_many_calls() {
    let (model, run) = run_with_limits(
        plodding,
        json!({"prompt": "Plod.", "max_iterations": 10, "limits": {"max_llm_calls": 3}}),
    )
    .await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "llm_calls");
    assert_eq!(
        run["answer"], "draft 3",
        "the partial answer is the last draft"
    );
    assert_eq!(model.requests().len(), 3);
    assert_eq!(run["usage"]["llm_calls"], 3);
}

#[tokio::test]
async fn max_tokens_trips_after_the_call_that_goes_over() {
    // Every call costs 107 tokens: 214 fit under 250, the third call goes over.
    let (model, run) = run_with_limits(
        plodding,
        json!({"prompt": "Plod.", "max_iterations": 10, "limits": {"max_tokens": 250}}),
    )
    .await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "tokens");
    assert_eq!(model.requests().len(), 3);
    assert_eq!(
        run["usage"]["input_tokens"].as_i64().unwrap()
            + run["usage"]["output_tokens"].as_i64().unwrap(),
        321
    );
}

#[tokio::test]
async fn max_cost_trips_on_the_price_table_and_totals_match_the_calls() {
    // gpt-4o-mini: 100 input tokens at $0.15/M and 7 output at $0.60/M = $0.0000192 a call.
    let (model, run) = run_with_limits(
        plodding,
        json!({"prompt": "Plod.", "max_iterations": 10, "limits": {"max_cost_usd": 0.00005}}),
    )
    .await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "budget");
    assert_eq!(model.requests().len(), 3);
    let cost = run["cost_usd"].as_f64().unwrap();
    assert!((cost - 3.0 * 0.0000192).abs() < 1e-12, "cost {cost}");
    assert!((run["tree"]["usage"]["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12);
}

fn always_failing(request: &SeenRequest, _: usize) -> Reply {
    let turn = request.turn();
    code(&format!(
        "answer['content'] = 'tried {turn}'\nraise ValueError('nope {turn}')"
    ))
}

#[tokio::test]
async fn max_errors_counts_consecutive_failed_iterations() {
    let (model, run) = run_with_limits(
        always_failing,
        json!({"prompt": "Fail.", "max_iterations": 10, "limits": {"max_errors": 2}}),
    )
    .await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "errors");
    assert_eq!(run["answer"], "tried 2");
    assert_eq!(model.requests().len(), 2);
}

fn sleeper(request: &SeenRequest, _: usize) -> Reply {
    match request.body["model"].as_str() {
        Some("slow-kid") => code("import time\nanswer['content'] = 'kid draft'\ntime.sleep(30)"),
        _ if request.last_user_text().contains("child please") => {
            code("answer['content'] = 'root draft'\nprint(rlm_query('work', model='slow-kid'))")
        }
        _ => code("import time\nanswer['content'] = 'before the sleep'\ntime.sleep(30)"),
    }
}

#[tokio::test]
async fn the_tree_timeout_lands_while_a_block_is_running() {
    let model = FakeModel::with_script(Duration::ZERO, sleeper).await;
    let app = spawn_app(&model).await;

    let started = Instant::now();
    let id = app
        .submit_ok(&json!({"prompt": "Sleep.", "limits": {"timeout_s": 1}}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "timeout");
    assert_eq!(run["answer"], "before the sleep");
    let events = app.events(&id, None).await;
    assert!(events
        .iter()
        .any(|e| e.event == "limit.tripped" && e.data["data"]["code"] == "timeout"));
    assert_eq!(events.last().unwrap().event, "run.failed");
}

#[tokio::test]
async fn the_tree_timeout_lands_while_a_child_is_running() {
    let model = FakeModel::with_script(Duration::ZERO, sleeper).await;
    let app = spawn_app(&model).await;

    let started = Instant::now();
    let id = app
        .submit_ok(&json!({"prompt": "child please", "max_depth": 2, "limits": {"timeout_s": 1.5}}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "timeout");
    assert_eq!(run["answer"], "root draft");
    let trajectory = app.trajectory(&id).await;
    let kid = &trajectory["children"][0]["run"];
    assert_eq!(kid["status"], "failed");
    assert_eq!(kid["error"]["code"], "timeout");
}

#[tokio::test]
async fn a_run_stopped_before_any_draft_has_no_answer() {
    // The model only prints; its replies are prose and code, never an answer.
    let (model, run) = run_with_limits(
        |_, _| code("print('still looking')"),
        json!({"prompt": "Look.", "max_iterations": 10, "limits": {"max_llm_calls": 2}}),
    )
    .await;

    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "llm_calls");
    assert_eq!(
        run["answer"],
        Value::Null,
        "a reply is not a partial answer"
    );
    assert_eq!(model.requests().len(), 2);
}
