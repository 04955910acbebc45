//! The RLM loop end to end: a user submits a task over HTTP and reads back the answer and
//! the trajectory, while a scripted model writes the code.

mod common;

use common::fake_model::{COMPLETION_TOKENS, PROMPT_TOKENS};
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_run_computes_its_answer_in_code_and_stores_the_trajectory() {
    let model = FakeModel::start(
        vec![
            code("fib = [0, 1]\nwhile len(fib) < 20:\n    fib.append(fib[-1] + fib[-2])\nprint(fib[-1])"),
            code("answer['content'] = str(fib)\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&task(
            "List the first 20 Fibonacci numbers.",
            json!("Compute in code."),
        ))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]"
    );
    assert_eq!(run["finish_reason"], "answer");
    assert_eq!(run["iterations"], 2);
    assert_eq!(run["usage"]["llm_calls"], 2);
    assert_eq!(run["usage"]["input_tokens"], 2 * PROMPT_TOKENS);
    assert_eq!(run["usage"]["output_tokens"], 2 * COMPLETION_TOKENS);
    assert_eq!(
        run["usage"]["total_tokens"],
        2 * (PROMPT_TOKENS + COMPLETION_TOKENS)
    );

    let trajectory = app.trajectory(&id).await;
    let iterations = trajectory["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 2);
    assert_eq!(iterations[0]["code_blocks"][0]["stdout"], "4181\n");
    assert_eq!(
        iterations[0]["code_blocks"][0]["error"],
        serde_json::Value::Null
    );
    assert_eq!(trajectory["llm_calls"].as_array().unwrap().len(), 2);

    // The second root call saw the first block's output, never the raw context.
    let roots = model.root_requests();
    assert_eq!(roots.len(), 2);
    assert!(
        roots[1].last_user_text().contains("4181"),
        "{}",
        roots[1].last_user_text()
    );
    assert!(roots[0].messages()[1]["content"]
        .as_str()
        .unwrap()
        .contains("a str of 16 characters"));
    assert_eq!(
        roots[0].authorization.as_deref(),
        Some(&*format!("Bearer {TEST_API_KEY}"))
    );
}

#[tokio::test]
async fn a_two_megabyte_context_is_searched_in_code_not_sent_to_the_model() {
    let mut haystack = String::with_capacity(2_100_000);
    let mut line = 0;
    while haystack.len() < 2_000_000 {
        haystack.push_str(&format!("record {line}: nothing to see here\n"));
        line += 1;
    }
    let needle_at = line / 2;
    haystack = haystack.replace(
        &format!("record {needle_at}: nothing to see here"),
        &format!("record {needle_at}: the vault code is 73-19-44"),
    );
    let model = FakeModel::start(
        vec![
            code("import re\nprint(len(context))\nm = re.search(r'vault code is ([0-9-]+)', context)\nprint(m.group(1))"),
            code("answer['content'] = m.group(1)\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&task("What is the vault code?", json!(haystack)))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "73-19-44");
    let trajectory = app.trajectory(&id).await;
    let stdout = trajectory["iterations"][0]["code_blocks"][0]["stdout"]
        .as_str()
        .unwrap();
    assert_eq!(stdout, format!("{}\n73-19-44\n", haystack.chars().count()));
    for request in model.requests() {
        let sent = request.body.to_string();
        assert!(
            sent.len() < 20_000,
            "the context leaked into a model call ({} bytes)",
            sent.len()
        );
    }
}

#[tokio::test]
async fn llm_query_batched_keeps_order_and_works_twice_in_one_run() {
    let model = FakeModel::start(
        vec![
            code(
                "first = llm_query_batched([f'echo {i}' for i in range(64)])\n\
                 second = llm_query_batched([f'echo {i + 100}' for i in range(64)])\n\
                 print(len(first), len(second))\n\
                 print(first[0], first[63], second[0], second[63])\n\
                 ok = first == [f'reply to echo {i}' for i in range(64)] and second == [f'reply to echo {i + 100}' for i in range(64)]\n\
                 answer['content'] = str(ok)\nanswer['ready'] = True",
            ),
        ],
        |prompt| text(format!("reply to {prompt}")),
    )
    .await;
    let app = spawn_app_with(&model, &[("RLM_MAX_CONCURRENT_SUBCALLS", "64")]).await;

    let id = app.submit_ok(&task("Echo everything.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "True");
    assert_eq!(run["usage"]["llm_calls"], 1 + 128);
    assert_eq!(model.sub_requests().len(), 128);
    let trajectory = app.trajectory(&id).await;
    assert_eq!(
        trajectory["iterations"][0]["code_blocks"][0]["stdout"],
        "64 64\nreply to echo 0 reply to echo 63 reply to echo 100 reply to echo 163\n"
    );
    let subs: Vec<_> = trajectory["llm_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "sub")
        .collect();
    assert_eq!(subs.len(), 128);
    assert!(subs
        .iter()
        .all(|c| c["iteration"] == 1 && c["error"].is_null()));
}

#[tokio::test]
async fn one_failing_prompt_does_not_sink_the_batch() {
    let model = FakeModel::start(
        vec![code("r = llm_query_batched(['good 1', 'bad', 'good 2'])\nanswer['content'] = ' | '.join(r)\nanswer['ready'] = True")],
        |prompt| {
            if prompt == "bad" {
                Reply::Error { status: 400, message: "this prompt is refused".into() }
            } else {
                text(format!("ok {prompt}"))
            }
        },
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Try them all.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["answer"],
        "ok good 1 | Error: openai answered HTTP 400: this prompt is refused (invalid_request_error) | ok good 2"
    );
}

#[tokio::test]
async fn a_python_exception_is_fed_back_and_the_model_recovers() {
    let model = FakeModel::start(
        vec![
            code("total = sum(int(x) for x in context.split(','))\nprint(undefined_name)"),
            code("answer['content'] = str(total)\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&task("Add the numbers.", json!("1,2,3,4")))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "10");
    let trajectory = app.trajectory(&id).await;
    let block = &trajectory["iterations"][0]["code_blocks"][0];
    assert_eq!(
        block["error"],
        "NameError: name 'undefined_name' is not defined"
    );
    let stderr = block["stderr"].as_str().unwrap();
    assert!(stderr.contains("Traceback"), "{stderr}");
    assert!(
        stderr.contains("print(undefined_name)"),
        "the traceback shows the model's line: {stderr}"
    );
    assert!(
        !stderr.contains("rlmd_prelude"),
        "rlmd's own frames are hidden: {stderr}"
    );
    // The model's next turn showed it the error.
    let second = &model.root_requests()[1];
    assert!(second
        .last_user_text()
        .contains("NameError: name 'undefined_name' is not defined"));
}

#[tokio::test]
async fn out_of_iterations_asks_once_more_for_a_final_answer() {
    let model = FakeModel::with_script(std::time::Duration::ZERO, |request, root_index| {
        if request
            .last_user_text()
            .contains("You have used all your turns")
        {
            text("My best guess is 42.")
        } else {
            code(&format!("print('turn {}')", root_index + 1))
        }
    })
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Think forever.", "context": "", "max_iterations": 3}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "My best guess is 42.");
    assert_eq!(run["finish_reason"], "max_iterations");
    assert_eq!(run["iterations"], 3);
    assert_eq!(model.root_requests().len(), 4);
    let trajectory = app.trajectory(&id).await;
    let kinds: Vec<_> = trajectory["llm_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds, vec!["root", "root", "root", "final"]);
}

#[tokio::test]
async fn notebook_echo_show_vars_and_final_var_in_prose() {
    let model = FakeModel::start(
        vec![
            Reply::Text(
                "```repl\nwords = context['text'].split()\nlen(words)\n```\n```repl\nSHOW_VARS()\n```".into(),
            ),
            Reply::Text("```repl\nresult = ' '.join(reversed(words))\n```\nFINAL_VAR(result)".into()),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&task(
            "Reverse the words.",
            json!({"text": "one two three"}),
        ))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "three two one");
    let trajectory = app.trajectory(&id).await;
    let blocks = &trajectory["iterations"][0]["code_blocks"];
    assert_eq!(blocks[0]["stdout"], "3\n");
    assert_eq!(
        blocks[1]["stdout"],
        "'Variables: context: dict, words: list'\n"
    );
    assert!(model.root_requests()[1]
        .last_user_text()
        .contains("REPL output (block 2 of 2):"));
}

#[tokio::test]
async fn long_output_is_cut_with_a_marker() {
    let model = FakeModel::start(
        vec![
            code("print('x' * 5000)"),
            code("answer['content'] = 'done'\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app
        .submit_ok(&json!({"prompt": "Print a lot.", "limits": {"output_chars": 1000}}))
        .await;
    app.wait_for_end(&id).await;

    let trajectory = app.trajectory(&id).await;
    let stdout = trajectory["iterations"][0]["code_blocks"][0]["stdout"]
        .as_str()
        .unwrap();
    assert_eq!(
        stdout,
        format!(
            "{}\n... [output truncated: 4001 more characters not shown]",
            "x".repeat(1000)
        )
    );
}

#[tokio::test]
async fn a_failing_root_model_fails_the_run_with_a_clear_reason() {
    let model = FakeModel::start(
        vec![Reply::Error {
            status: 401,
            message: format!("Incorrect API key provided: {TEST_API_KEY}"),
        }],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;

    let id = app.submit_ok(&task("Anything.", json!(""))).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "provider_error");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("openai answered HTTP 401: Incorrect API key provided: [redacted]"),
        "{message}"
    );
    assert!(!run.to_string().contains(TEST_API_KEY));
}
