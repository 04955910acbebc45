//! The web console in a real headless browser (Debian's chromium, driven by Playwright from
//! the clients' virtual environment): it loads without errors, submits a run from its form
//! and shows the answer live, shows a child's code in the tree, cancels a running run, and
//! puts a comparison side by side.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Runs tests/clients/console.py CASE against `app`; what the page showed. Any console
/// error or page error fails the test.
async fn browser(app: &TestApp, case: &str, arg: Option<&str>) -> Value {
    let mut args = vec![app.address.as_str(), case];
    args.extend(arg);
    let seen = common::clients::run_script("console.py", &args).await;
    assert_eq!(seen["console_errors"], json!([]), "{case}: {seen}");
    assert_eq!(seen["page_errors"], json!([]), "{case}: {seen}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_loads_every_page_without_errors() {
    let model = FakeModel::start(vec![text("FINAL(done)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    app.submit_ok(&task("A run to list.", json!("c"))).await;

    let seen = browser(&app, "loads", None).await;

    assert_eq!(seen["title"], "rlmd console");
    assert_eq!(
        seen["headings"],
        json!([
            "Submit a run",
            "Sessions",
            "Comparisons",
            "Providers",
            "Runs"
        ])
    );
    assert!(seen["provider_rows"].as_u64().unwrap() >= 7, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_submitted_from_the_form_completes_on_screen() {
    // Each run: count the words, then answer.
    let model = FakeModel::with_script(Duration::ZERO, |request, _| match request.turn() {
        1 => code("n = len(context.split())\nprint(n)"),
        _ => code("answer['content'] = f'{n} words'\nanswer['ready'] = True"),
    })
    .await;
    let app = spawn_app(&model).await;

    let seen = browser(&app, "submit", None).await;

    assert_eq!(seen["answer"], "4 words");
    assert_eq!(seen["status"], "succeeded");
    assert!(seen["code"]
        .as_str()
        .unwrap()
        .contains("len(context.split())"));
    let run = app.run(seen["run_id"].as_str().unwrap()).await;
    assert_eq!(run["prompt"], "How many words are in the context?");

    // A chosen file is uploaded as a context and the run names it.
    let seen = browser(&app, "submit", Some("file")).await;
    assert_eq!(seen["answer"], "5 words", "{seen}");
    let run = app.run(seen["run_id"].as_str().unwrap()).await;
    let (status, uploaded) = app.get("/v1/contexts").await;
    assert_eq!(status, 200);
    let upload = &uploaded["contexts"][0];
    let name = upload["name"].as_str().unwrap();
    assert!(
        name.starts_with("rlmd-console-") && name.ends_with(".txt"),
        "{upload}"
    );
    assert_eq!(
        (&upload["format"], &upload["bytes"]),
        (&json!("text"), &json!(23))
    );
    assert_eq!(run["context_id"], upload["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_run_shows_its_childs_code_in_the_tree() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text("unused");
        }
        match (request.body["model"] == "kid", request.turn()) {
            (true, _) => code("answer['content'] = 'kid says ' + context\nanswer['ready'] = True"),
            (false, 1) => code("reply = rlm_query('hello')\nprint(reply)"),
            (false, _) => code("answer['content'] = reply\nanswer['ready'] = True"),
        }
    })
    .await;
    let app = spawn_app(&model).await;
    let id = app
        .submit_ok(&json!({"prompt": "Ask the kid.", "max_depth": 2, "sub_model": "kid"}))
        .await;
    app.wait_for_end(&id).await;

    let seen = browser(&app, "tree", Some(&id)).await;

    assert!(
        seen["child_code"]
            .as_str()
            .unwrap()
            .contains("'kid says ' + context"),
        "{seen}"
    );
    assert!(
        seen["root_code"]
            .as_str()
            .unwrap()
            .contains("rlm_query('hello')"),
        "{seen}"
    );
    assert_eq!(seen["answer"], "kid says hello");
    assert!(seen["timeline_bars"].as_u64().unwrap() >= 3, "{seen}");
    // The exact messages of a turn, fetched when opened.
    assert_eq!(seen["first_messages"], json!(["system", "user"]), "{seen}");
    assert!(
        seen["sent_prompt"]
            .as_str()
            .unwrap()
            .contains("Ask the kid."),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_prompt_and_a_dozen_children_do_not_break_the_layout() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text("unused");
        }
        match (request.body["model"] == "kid", request.turn()) {
            (true, _) => code("answer['content'] = 'k' * 5000\nanswer['ready'] = True"),
            (false, 1) => {
                code("kids = rlm_query_batched([str(i) for i in range(12)])\nprint(len(kids))")
            }
            (false, _) => code("answer['content'] = 'x' * 200000\nanswer['ready'] = True"),
        }
    })
    .await;
    let app = spawn_app(&model).await;
    let prompt = "w".repeat(5 * 1024 * 1024);
    let id = app
        .submit_ok(&json!({"prompt": prompt, "max_depth": 2, "sub_model": "kid"}))
        .await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{}", run["error"]);

    let seen = browser(&app, "layout", Some(&id)).await;

    assert_eq!(seen["overflow_1280"], 0, "{seen}");
    assert_eq!(seen["overflow_390"], 0, "{seen}");
    assert_eq!(seen["list_overflow"], 0, "{seen}");
    assert!(
        seen["heading_chars"].as_u64().unwrap() <= 301,
        "the prompt is cut: {seen}"
    );
    assert_eq!(seen["folded_children"], json!(["12 child runs"]), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_is_cancelled_from_its_page() {
    let model = FakeModel::start(
        vec![Reply::Slow(Duration::from_secs(60), "FINAL(late)".into())],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&task("Take your time.", json!("c"))).await;
    app.wait_for_status(&id, "running").await;

    let seen = browser(&app, "cancel", Some(&id)).await;

    assert_eq!(seen["status"], "cancelled");
    assert_eq!(app.run(&id).await["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_is_shown_side_by_side() {
    let model = FakeModel::start(vec![text("FINAL(same answer)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let body = json!({"prompt": "Compare.", "context": "c",
                      "targets": [{"provider": "openai", "model": "m1"}, {"provider": "openai", "model": "m2"}]});
    let (status, comparison) = app.submit_to("/v1/comparisons", &body).await;
    assert_eq!(status, 202);
    let id = comparison["id"].as_str().unwrap();

    let seen = browser(&app, "comparison", Some(id)).await;

    let targets: Vec<&str> = seen["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 2);
    assert!(
        targets[0].starts_with("openai/m1") && targets[1].starts_with("openai/m2"),
        "{seen}"
    );
    assert_eq!(seen["answers"], json!(["same answer", "same answer"]));
    let tags = seen["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("fastest")) && tags.contains(&json!("cheapest")),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_on_the_console_asks_for_one_and_shows_only_its_runs() {
    let model = FakeModel::start(vec![text("FINAL(x)")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let alice = app.create_key("alice", Default::default()).await;
    let bob = app.create_key("bob", Default::default()).await;
    app.post_as(&alice, "/v1/runs", &task("Alice's run.", json!("c")))
        .await;
    app.post_as(&bob, "/v1/runs", &task("Bob's run.", json!("c")))
        .await;

    let seen = browser(&app, "key", Some(&alice)).await;

    assert_eq!(seen["prompts"], json!(["Alice's run."]), "{seen}");
}
