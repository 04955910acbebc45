//! Typed answers: a run with an `answer_schema` ends only on an answer that fits it; the
//! model is told which paths failed; the answer is stored and shown as the JSON value.

mod common;

use std::time::Duration;

use common::fake_model::SeenRequest;
use common::*;
use serde_json::{json, Value};

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0}
        },
        "required": ["name", "age"],
        "additionalProperties": false
    })
}

fn typed_run(prompt: &str) -> Value {
    json!({"prompt": prompt, "context": "Ada is 36.", "answer_schema": person_schema(),
           "max_iterations": 3})
}

#[tokio::test]
async fn an_answer_that_fits_on_the_first_try_is_the_run_s_json_value() {
    let model = FakeModel::start(
        vec![code(
            "answer['content'] = {'name': 'Ada', 'age': 36}\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&typed_run("Who is in the context?")).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], json!({"name": "Ada", "age": 36}));
    assert_eq!(
        serde_json::from_str::<Value>(run["answer_text"].as_str().unwrap()).unwrap(),
        json!({"name": "Ada", "age": 36})
    );
    assert_eq!(run["answer_schema"], person_schema());
    assert_eq!(run["iterations"], 1);
    // The model was told the shape.
    let system = model.root_requests()[0].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("must be JSON that fits this JSON Schema"),
        "{system}"
    );
    assert!(
        system.contains("\"additionalProperties\": false"),
        "{system}"
    );
    // The run's end event carries the value.
    let events = app.events(&id, None).await;
    let end = events.iter().find(|e| e.event == "run.succeeded").unwrap();
    assert_eq!(
        end.data["data"]["answer"],
        json!({"name": "Ada", "age": 36})
    );
}

#[tokio::test]
async fn an_answer_that_does_not_fit_is_sent_back_with_its_failing_paths_and_then_fixed() {
    let model = FakeModel::start(
        vec![
            code("answer['content'] = {'name': 'Ada', 'age': 'thirty-six'}\nanswer['ready'] = True\nprint('submitted')"),
            // The candidate is still there to mend; it is no longer ready.
            code("print(answer['ready'], answer['content']['age'])\nanswer['content']['age'] = 36\nanswer['ready'] = True"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&typed_run("Who?")).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], json!({"name": "Ada", "age": 36}));
    assert_eq!(run["iterations"], 2);

    let second: &SeenRequest = &model.root_requests()[1];
    let feedback = second.last_user_text();
    assert!(
        feedback.contains("The answer was not accepted"),
        "{feedback}"
    );
    assert!(
        feedback.contains("at `/age`: \"thirty-six\" is not of type \"integer\""),
        "{feedback}"
    );
    let trajectory = app.trajectory(&id).await;
    let blocks = &trajectory["iterations"][1]["code_blocks"];
    assert_eq!(blocks[0]["stdout"], "False thirty-six\n");

    let events = app.events(&id, None).await;
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.event == "answer.rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].data["data"]["failures"][0]["path"], "/age");
    // Counted (the counter is the process's: other tests here add to it).
    assert!(app.metric("rlmd_answers_rejected_total ").await >= 1.0);
}

#[tokio::test]
async fn an_answer_that_never_fits_fails_the_run_with_invalid_answer_and_the_last_candidate() {
    let model = FakeModel::start(
        vec![
            code("answer['content'] = {'name': 'Ada'}\nanswer['ready'] = True"),
            code("answer['content'] = '{\"name\": \"Ada\", \"age\": -1}'\nanswer['ready'] = True"),
            // The final call (out of turns): prose, not JSON.
            text("I could not work it out."),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let mut body = typed_run("Who?");
    body["max_iterations"] = json!(2);
    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["error"]["code"], "invalid_answer", "{run}");
    assert!(
        run["error"]["message"]
            .as_str()
            .unwrap()
            .contains("after 2 iterations"),
        "{run}"
    );
    // The last candidate the code submitted is kept, as text.
    assert_eq!(run["answer"], "{\"name\": \"Ada\", \"age\": -1}");
    // The second turn was told what was missing from the first.
    let feedback = model.root_requests()[1].last_user_text();
    assert!(
        feedback.contains("\"age\" is a required property"),
        "{feedback}"
    );
    assert_eq!(model.root_requests().len(), 3);
}

#[tokio::test]
async fn a_schema_that_is_not_a_json_schema_is_refused_at_submit_and_nothing_is_stored() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app(&model).await;
    for bad in [
        json!({"type": "banana"}),
        json!({"type": "object", "properties": {"a": 5}}),
        json!("an object"),
        json!({"$ref": "https://example.com/remote.json"}),
    ] {
        let (status, body) = app
            .submit(&json!({"prompt": "p", "answer_schema": bad}))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_answer_schema", "{body}");
    }
    let (_, runs) = app.get("/v1/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn a_child_given_a_schema_returns_the_parsed_value_to_its_parent_s_code() {
    let model = FakeModel::with_script(Duration::ZERO, |request, _| {
        if !request.is_root() {
            return text("unused");
        }
        let system = request.messages()[0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if system.contains("fits this JSON Schema") {
            // The child: a dict, first with a wrong type, then fixed.
            match request.turn() {
                1 => code("answer['content'] = {'total': '12'}\nanswer['ready'] = True"),
                _ => code("answer['content'] = {'total': 12}\nanswer['ready'] = True"),
            }
        } else {
            code(
                "r = rlm_query('count them', schema={'type': 'object', 'properties': {'total': {'type': 'integer'}}, 'required': ['total']})\n\
                 print(type(r).__name__)\nanswer['content'] = str(r['total'] * 2)\nanswer['ready'] = True",
            )
        }
    })
    .await;
    let app = spawn_app(&model).await;
    let id = app
        .submit_ok(&json!({"prompt": "Double the count.", "max_depth": 2}))
        .await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "24");
    let trajectory = app.trajectory(&id).await;
    assert_eq!(
        trajectory["iterations"][0]["code_blocks"][0]["stdout"],
        "dict\n"
    );
    let child = &trajectory["children"][0]["run"];
    assert_eq!(child["answer"], json!({"total": 12}));
    assert_eq!(child["iterations"], 2);
    assert_eq!(child["answer_schema"]["required"], json!(["total"]));
}

#[tokio::test]
async fn a_bad_schema_from_code_raises_in_the_code_before_anything_is_paid_for() {
    let model = FakeModel::start(
        vec![code(
            "try:\n    rlm_query('x', schema={'type': 'banana'})\nexcept RuntimeError as e:\n    print('refused:', 'schema is not a usable JSON Schema' in str(e))\nanswer['content'] = 'done'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&json!({"prompt": "p", "max_depth": 2})).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let trajectory = app.trajectory(&id).await;
    assert_eq!(
        trajectory["iterations"][0]["code_blocks"][0]["stdout"],
        "refused: True\n"
    );
    assert!(trajectory["children"].as_array().unwrap().is_empty());
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn the_openai_endpoint_takes_a_json_schema_response_format_and_returns_the_json() {
    let model = FakeModel::start(vec![code("FINAL({'name': 'Ada', 'age': 36})")], |_| {
        text("unused")
    })
    .await;
    let app = spawn_app(&model).await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({
            "model": "rlm",
            "messages": [{"role": "user", "content": "Who is it?"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "person", "strict": true, "schema": person_schema()}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(content).unwrap(),
        json!({"name": "Ada", "age": 36})
    );

    let (status, body) = app
        .submit_to(
            "/v1/chat/completions",
            &json!({"model": "rlm", "messages": [{"role": "user", "content": "x"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": 7}}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_answer_schema");
    let (status, body) = app
        .submit_to(
            "/v1/chat/completions",
            &json!({"model": "rlm", "messages": [{"role": "user", "content": "x"}],
                    "response_format": {"type": "yaml"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_response_format");
}

#[tokio::test]
async fn session_turns_and_comparisons_take_a_schema_too() {
    let model = FakeModel::start(
        vec![code(
            "answer['content'] = '[1, 2, 3]'\nanswer['ready'] = True",
        )],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let schema = json!({"type": "array", "items": {"type": "integer"}, "minItems": 3});
    let (status, session) = app.submit_to("/v1/sessions", &json!({})).await;
    assert_eq!(status, 201, "{session}");
    let session = session["id"].as_str().unwrap();
    let (status, turn) = app
        .submit_to(
            &format!("/v1/sessions/{session}/runs"),
            &json!({"prompt": "Three numbers.", "answer_schema": schema}),
        )
        .await;
    assert_eq!(status, 202, "{turn}");
    let run = app.wait_for_end(turn["id"].as_str().unwrap()).await;
    assert_eq!(run["answer"], json!([1, 2, 3]), "{run}");

    let (status, created) = app
        .submit_to(
            "/v1/comparisons",
            &json!({"prompt": "Three numbers.", "answer_schema": schema,
                    "targets": [{"provider": "openai"}, {"provider": "openai", "model": "other"}]}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap();
    let comparison = loop {
        let (_, body) = app.get(&format!("/v1/comparisons/{id}")).await;
        if body["status"] == "finished" {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for result in comparison["results"].as_array().unwrap() {
        assert_eq!(result["answer"], json!([1, 2, 3]), "{comparison}");
        assert_eq!(result["answer_text"], "[1,2,3]");
    }
}

#[tokio::test]
async fn at_the_depth_cap_a_typed_rlm_query_is_a_sub_call_whose_reply_must_fit() {
    let model = FakeModel::start(
        vec![code(
            "schema = {'type': 'object', 'properties': {'total': {'type': 'integer'}}, 'required': ['total']}\n\
             good, bad = rlm_query_batched(['count a', 'count b'], schema=schema)\n\
             print(good['total'])\n\
             print(bad)\nanswer['content'] = 'ok'\nanswer['ready'] = True",
        )],
        |prompt| match prompt.starts_with("count a") {
            true => text("```json\n{\"total\": 3}\n```"),
            false => text("three"),
        },
    )
    .await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&json!({"prompt": "p", "max_depth": 1})).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let trajectory = app.trajectory(&id).await;
    let printed = trajectory["iterations"][0]["code_blocks"][0]["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        printed.starts_with(
            "3\nError: the reply does not fit the schema: the answer is a string that is not JSON"
        ),
        "{printed}"
    );
    let asked = model.sub_requests()[0].last_user_text();
    assert!(
        asked.contains("Reply with only JSON that fits this JSON Schema"),
        "{asked}"
    );
    assert!(trajectory["children"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_streamed_completion_tells_of_a_rejected_answer_then_streams_the_json() {
    let model = FakeModel::start(
        vec![
            code("FINAL({'name': 'Ada', 'age': 'old'})"),
            code("FINAL({'name': 'Ada', 'age': 36})"),
        ],
        |_| text("unused"),
    )
    .await;
    let app = spawn_app(&model).await;
    let body = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&json!({
            "model": "rlm", "stream": true,
            "messages": [{"role": "user", "content": "Who is it?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": person_schema()}}
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (mut reasoning, mut content) = (String::new(), String::new());
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let delta = &chunk["choices"][0]["delta"];
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or_default());
        content.push_str(delta["content"].as_str().unwrap_or_default());
    }
    assert!(
        reasoning.contains("The answer does not fit the schema:\n- at /age:"),
        "{reasoning}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&content).unwrap(),
        json!({"name": "Ada", "age": 36})
    );
}
