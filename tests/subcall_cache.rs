//! The sub-call cache: a run that opts in (`cache`) gets its deterministic sub-calls
//! answered from earlier identical ones, marked in its trajectory and free, within its
//! scope (its tree, or its API key's runs) and for `RLM_CACHE_TTL_S`.

mod common;

use std::time::Duration;

use common::*;
use rlmd::keys::KeyOptions;
use serde_json::{json, Value};

/// Asks `prompts` as one batch and prints the replies.
fn batch_code(prompts: &[&str]) -> String {
    format!("print(llm_query_batched({prompts:?}))")
}

/// A model whose root asks `prompts` in a batch each turn, for `turns` turns, then
/// answers; sub-calls are answered `re:<prompt>`.
async fn asking_model(prompts: &'static [&'static str], turns: usize) -> FakeModel {
    FakeModel::with_script(Duration::ZERO, move |request, _| {
        if !request.is_root() {
            return text(format!("re:{}", request.last_user_text()));
        }
        match request.turn() <= turns {
            true => code(&batch_code(prompts)),
            false => code("answer['content'] = 'done'\nanswer['ready'] = True"),
        }
    })
    .await
}

fn cached_run(cache: &str) -> Value {
    json!({"prompt": "Ask.", "cache": cache, "sub_sampling": {"temperature": 0}})
}

/// How many times the fake model was asked each sub-call prompt.
fn times_asked(model: &FakeModel, prompt: &str) -> usize {
    model
        .sub_requests()
        .iter()
        .filter(|r| r.last_user_text() == prompt)
        .count()
}

#[tokio::test]
async fn a_repeated_batch_is_answered_from_the_cache_marked_and_free() {
    let model = asking_model(&["alpha", "beta", "alpha"], 2).await;
    let app = spawn_app(&model).await;
    // Three root calls and two sub-calls reach the model: the four hits must not count
    // against the limit, or the run would stop at its sixth call.
    let mut body = cached_run("tree");
    body["limits"] = json!({"max_llm_calls": 5});
    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["cache"], "tree");
    assert_eq!(run["usage"]["llm_calls"], 5);
    assert_eq!(run["usage"]["cache_hits"], 4);

    // Each prompt reached the model once, whatever the repeats.
    assert_eq!(times_asked(&model, "alpha"), 1);
    assert_eq!(times_asked(&model, "beta"), 1);
    let trajectory = app.trajectory(&id).await;
    for it in 0..2 {
        assert_eq!(
            trajectory["iterations"][it]["code_blocks"][0]["stdout"],
            "['re:alpha', 're:beta', 're:alpha']\n",
            "the code reads the same replies"
        );
    }
    let subs: Vec<&Value> = trajectory["llm_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "sub")
        .collect();
    assert_eq!(subs.len(), 6, "every sub-call is in the trajectory");
    let hits: Vec<&&Value> = subs.iter().filter(|c| c["cache_hit"] == true).collect();
    assert_eq!(hits.len(), 4, "{subs:?}");
    for hit in &hits {
        assert_eq!(hit["cost_usd"], 0.0);
        assert_eq!(hit["input_tokens"], 0);
        assert_eq!(hit["output_tokens"], 0);
        assert!(hit["reply"].as_str().unwrap().starts_with("re:"));
    }
    // Only what the model was asked is counted: 3 root calls and 2 sub-calls.
    assert_eq!(
        run["usage"]["input_tokens"],
        5 * common::fake_model::PROMPT_TOKENS
    );
    let events = app.events(&id, None).await;
    let finished: Vec<i64> = events
        .iter()
        .filter(|e| e.event == "subcalls.finished")
        .map(|e| e.data["data"]["cache_hits"].as_i64().unwrap())
        .collect();
    assert_eq!(finished, vec![1, 3]);
    // The counters are this process's: other tests here may have added to them.
    assert!(app.metric("rlmd_subcall_cache_hits_total ").await >= 4.0);
    assert!(app.metric("rlmd_subcall_cache_misses_total ").await >= 2.0);
}

#[tokio::test]
async fn a_tree_cache_serves_its_own_tree_only() {
    let model = asking_model(&["alpha"], 1).await;
    let app = spawn_app(&model).await;
    for _ in 0..2 {
        let id = app.submit_ok(&cached_run("tree")).await;
        assert_eq!(app.wait_for_end(&id).await["status"], "succeeded");
    }
    assert_eq!(times_asked(&model, "alpha"), 2);
}

#[tokio::test]
async fn a_global_cache_serves_the_same_key_s_runs_and_never_another_tenant() {
    let model = asking_model(&["alpha"], 1).await;
    let app = spawn_app(&model).await;
    let ours = app.create_key("ours", KeyOptions::default()).await;
    let theirs = app.create_key("theirs", KeyOptions::default()).await;
    let run_as = |key: String| {
        let app = &app;
        async move {
            let (status, _, run) = app.post_as(&key, "/v1/runs", &cached_run("global")).await;
            assert_eq!(status, 202, "{run}");
            let id = run["id"].as_str().unwrap().to_string();
            loop {
                let (_, run) = app.get_as(&key, &format!("/v1/runs/{id}")).await;
                if run["status"] == "succeeded" {
                    let (_, trajectory) =
                        app.get_as(&key, &format!("/v1/runs/{id}/trajectory")).await;
                    return trajectory;
                }
                assert_ne!(run["status"], "failed", "{run}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let first = run_as(ours.clone()).await;
    assert_eq!(times_asked(&model, "alpha"), 1);
    let second = run_as(ours.clone()).await;
    assert_eq!(
        times_asked(&model, "alpha"),
        1,
        "the same key's next run hits"
    );
    let hit = |t: &Value| {
        t["llm_calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "sub" && c["cache_hit"] == true)
    };
    assert!(!hit(&first) && hit(&second));
    let other = run_as(theirs).await;
    assert_eq!(
        times_asked(&model, "alpha"),
        2,
        "another tenant is never served"
    );
    assert!(!hit(&other));
}

#[tokio::test]
async fn calls_that_are_not_deterministic_or_not_opted_in_are_never_cached() {
    let model = asking_model(&["alpha", "alpha"], 1).await;
    let app = spawn_app(&model).await;
    // No temperature (the operator did not allow unset ones), and a sampled temperature.
    for body in [
        json!({"prompt": "Ask.", "cache": "global"}),
        json!({"prompt": "Ask.", "cache": "global", "sub_sampling": {"temperature": 0.7}}),
        json!({"prompt": "Ask.", "sub_sampling": {"temperature": 0}}),
    ] {
        let id = app.submit_ok(&body).await;
        assert_eq!(app.wait_for_end(&id).await["status"], "succeeded");
    }
    assert_eq!(times_asked(&model, "alpha"), 6);

    let (status, body) = app
        .submit(&json!({"prompt": "Ask.", "cache": "forever"}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn entries_expire_and_the_operator_may_cache_unset_temperatures_by_default() {
    let model = asking_model(&["alpha"], 1).await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_CACHE", "global"),
            ("RLM_CACHE_TTL_S", "1"),
            ("RLM_CACHE_UNSET_TEMPERATURE", "openai,gemini"),
        ],
    )
    .await;
    let plain = json!({"prompt": "Ask."});
    let id = app.submit_ok(&plain).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["cache"], "global", "the server's default");
    let id = app.submit_ok(&plain).await;
    app.wait_for_end(&id).await;
    assert_eq!(times_asked(&model, "alpha"), 1, "answered from the cache");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id = app.submit_ok(&plain).await;
    app.wait_for_end(&id).await;
    assert_eq!(
        times_asked(&model, "alpha"),
        2,
        "an expired entry is not served"
    );
}
