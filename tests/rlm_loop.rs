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
