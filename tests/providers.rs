//! Each provider on the wire: the exact request (URL, headers, body), its real response and
//! error shapes, retries as its SDK does them, and failures that are clear and key-free.

mod common;

use std::time::Duration;

use common::fake_http::FakeHttp;
use common::*;
use serde_json::{json, Value};

const KEY: &str = "provider-key-7d3f-never-leak";
const ANSWER_CODE: &str = "```repl\nanswer['content'] = 'done'\nanswer['ready'] = True\n```";

fn reply(status: u16, body: Value) -> Reply {
    Reply::Raw {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

fn anthropic_ok(text: &str) -> Reply {
    reply(
        200,
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 50, "output_tokens": 9, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 20}}),
    )
}

fn gemini_ok(text: &str) -> Reply {
    reply(
        200,
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 80, "candidatesTokenCount": 6, "thoughtsTokenCount": 4,
                          "cachedContentTokenCount": 16, "totalTokenCount": 90}}),
    )
}

fn openai_ok(text: &str, usage: Value) -> Reply {
    reply(
        200,
        json!({"id": "c1", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage}),
    )
}

/// Boots rlmd with one provider pointed at `fake`, and runs one task on it.
async fn run_on(provider: &str, vars: &[(&str, &str)], body: Value) -> (TestApp, Value) {
    let unused = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let mut all = vec![("RLM_PROVIDER_MAX_RETRIES", "2")];
    all.extend_from_slice(vars);
    let app = spawn_app_with(&unused, &all).await;
    let mut body = body;
    body["provider"] = json!(provider);
    let id = app.submit_ok(&body).await;
    let run = app.wait_for_end(&id).await;
    (app, run)
}

#[tokio::test]
async fn anthropic_gets_its_own_request_shape_and_its_usage_is_read() {
    let fake = FakeHttp::start(|_, _| anthropic_ok(ANSWER_CODE)).await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "anthropic",
        &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &base)],
        json!({"prompt": "Do it.", "model": "claude-x", "sampling": {"temperature": 0.3, "top_p": 0.9, "max_tokens": 500}}),
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "done");
    let seen = &fake.requests()[0];
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen.header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(
        seen.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert!(seen.header("authorization").is_none());
    let body = &seen.body;
    assert_eq!(
        (body["model"].clone(), body["max_tokens"].clone()),
        (json!("claude-x"), json!(500))
    );
    assert!(
        body["system"][0]["text"].as_str().unwrap().contains("REPL"),
        "the system prompt is top-level"
    );
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user"]);
    assert_eq!(body["temperature"], 0.3);
    assert!(
        body.get("top_p").is_none(),
        "newer Claude models refuse temperature and top_p together"
    );
    // Input counts cache reads and writes; cached is the reads.
    assert_eq!(run["usage"]["input_tokens"], 100);
    assert_eq!(run["usage"]["output_tokens"], 9);
    assert_eq!(run["usage"]["cached_tokens"], 30);
    assert_eq!(run["usage"]["cache_write_tokens"], 20);
}

#[tokio::test]
async fn anthropic_529_and_429_are_retried_honouring_retry_after() {
    let fake = FakeHttp::start(|_, index| match index {
        0 => reply(529, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        1 => Reply::Raw { status: 429, headers: vec![("retry-after", "1".into())],
                          body: json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).to_string() },
        _ => anthropic_ok(ANSWER_CODE),
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "anthropic",
        &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &base)],
        json!({"prompt": "Go."}),
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[2].at.duration_since(seen[1].at) >= Duration::from_millis(990),
        "retry-after was not honoured"
    );
}

#[tokio::test]
async fn anthropic_spend_limits_and_bad_keys_fail_at_once_without_the_key() {
    for (status, body, expected) in [
        (401, json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key {KEY}")}}),
         "anthropic answered HTTP 401: invalid x-api-key [redacted] (authentication_error)"),
        (400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API."}}),
         "anthropic answered HTTP 400: Your credit balance is too low to access the Anthropic API. (invalid_request_error)"),
        (429, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "monthly spend limit", "details": {"error_code": "enforced_spend_limit_reached"}}}),
         "anthropic answered HTTP 429: monthly spend limit (rate_limit_error)"),
    ] {
        let fake = FakeHttp::start(move |_, _| reply(status, body.clone())).await;
        let base = fake.base_url.clone();
        let (_, run) = run_on("anthropic", &[("ANTHROPIC_API_KEY", KEY), ("ANTHROPIC_BASE_URL", &base)], json!({"prompt": "Go."})).await;

        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(run["error"]["code"], "provider_error");
        assert_eq!(run["error"]["message"], expected);
        assert_eq!(fake.requests().len(), 1, "HTTP {status} must not be retried");
        assert!(!run.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn gemini_gets_contents_and_generation_config_and_its_usage_is_read() {
    let fake = FakeHttp::start(|_, _| gemini_ok(ANSWER_CODE)).await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "gemini",
        &[("GOOGLE_API_KEY", KEY), ("GEMINI_BASE_URL", &base)],
        json!({"prompt": "Do it.", "sampling": {"temperature": 0.1, "top_p": 0.8, "max_tokens": 256, "seed": 3}}),
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = &fake.requests()[0];
    assert_eq!(
        seen.target,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(seen.header("x-goog-api-key").as_deref(), Some(KEY));
    assert!(
        !seen.target.contains(KEY),
        "the key goes in a header, not the URL"
    );
    let body = &seen.body;
    assert!(body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap()
        .contains("REPL"));
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(
        body["generationConfig"],
        json!({"temperature": 0.1, "topP": 0.8, "maxOutputTokens": 256, "seed": 3})
    );
    assert_eq!(run["usage"]["input_tokens"], 80);
    assert_eq!(
        run["usage"]["output_tokens"], 10,
        "thinking tokens are output"
    );
    assert_eq!(run["usage"]["cached_tokens"], 16);
    assert_eq!(run["usage"]["reasoning_tokens"], 4);
}

#[tokio::test]
async fn gemini_safety_blocks_are_clear_errors_and_retry_info_is_honoured() {
    let blocked = FakeHttp::start(|_, _| {
        reply(
            200,
            json!({"promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}),
        )
    })
    .await;
    let base = blocked.base_url.clone();
    let (_, run) = run_on(
        "gemini",
        &[("GOOGLE_API_KEY", KEY), ("GEMINI_BASE_URL", &base)],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"]["message"],
        "gemini returned no content (finish_reason: the prompt was blocked (SAFETY))"
    );

    let limited = FakeHttp::start(|_, index| match index {
        0 => reply(429, json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]}})),
        1 | 2 => reply(500, json!({"error": {"code": 500, "message": "internal", "status": "INTERNAL"}})),
        _ => gemini_ok(ANSWER_CODE),
    })
    .await;
    let base = limited.base_url.clone();
    let (_, run) = run_on(
        "gemini",
        &[
            ("GOOGLE_API_KEY", KEY),
            ("GEMINI_BASE_URL", &base),
            ("RLM_PROVIDER_MAX_RETRIES", "3"),
        ],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = limited.requests();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(990),
        "retryDelay was not honoured"
    );
}

#[tokio::test]
async fn azure_uses_the_deployment_url_and_an_api_key_header() {
    let fake = FakeHttp::start(|_, _| {
        openai_ok(
            ANSWER_CODE,
            json!({"prompt_tokens": 5, "completion_tokens": 2}),
        )
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "azure_openai",
        &[
            ("AZURE_OPENAI_API_KEY", KEY),
            ("AZURE_OPENAI_ENDPOINT", &base),
            ("AZURE_OPENAI_DEPLOYMENT", "prod-4o"),
        ],
        json!({"prompt": "Go.", "sampling": {"max_tokens": 99}}),
    )
    .await;

    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = &fake.requests()[0];
    assert_eq!(
        seen.target,
        "/openai/deployments/prod-4o/chat/completions?api-version=2024-02-01"
    );
    assert_eq!(seen.header("api-key").as_deref(), Some(KEY));
    assert!(seen.header("authorization").is_none());
    assert_eq!(seen.body["max_completion_tokens"], 99);
}

#[tokio::test]
async fn openrouter_portkey_and_litellm_get_their_headers_and_report_cost() {
    let usage = json!({"prompt_tokens": 5, "completion_tokens": 2, "cost": 0.0042});
    let fake = FakeHttp::start(move |_, _| openai_ok(ANSWER_CODE, usage.clone())).await;
    let base = format!("{}/api/v1", fake.base_url);
    let (_, run) = run_on(
        "openrouter",
        &[("OPENROUTER_API_KEY", KEY), ("OPENROUTER_BASE_URL", &base)],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = &fake.requests()[0];
    assert_eq!(seen.target, "/api/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {KEY}")));
    assert_eq!(seen.body["model"], "openai/gpt-4o-mini");
    assert_eq!(run["cost_usd"], 0.0042, "OpenRouter's own figure wins");

    let fake = FakeHttp::start(|_, _| {
        openai_ok(
            ANSWER_CODE,
            json!({"prompt_tokens": 5, "completion_tokens": 2}),
        )
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "portkey",
        &[
            ("PORTKEY_API_KEY", KEY),
            ("PORTKEY_BASE_URL", &base),
            ("PORTKEY_PROVIDER", "@openai-prod"),
        ],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = &fake.requests()[0];
    assert_eq!(seen.header("x-portkey-api-key").as_deref(), Some(KEY));
    assert_eq!(
        seen.header("x-portkey-provider").as_deref(),
        Some("@openai-prod")
    );

    let fake = FakeHttp::start(|_, _| {
        let Reply::Raw {
            status,
            mut headers,
            body,
        } = openai_ok(
            ANSWER_CODE,
            json!({"prompt_tokens": 5, "completion_tokens": 2}),
        )
        else {
            unreachable!()
        };
        headers.push(("x-litellm-response-cost", "0.00125".into()));
        Reply::Raw {
            status,
            headers,
            body,
        }
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "litellm",
        &[
            ("LITELLM_PROXY_BASE_URL", &base),
            ("LITELLM_PROXY_API_KEY", KEY),
        ],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}"))
    );
    assert_eq!(run["cost_usd"], 0.00125);
}

#[tokio::test]
async fn quota_errors_are_not_retried() {
    let fake = FakeHttp::start(|_, _| {
        reply(
            429,
            json!({"error": {"message": "You exceeded your current quota",
        "type": "insufficient_quota", "code": "insufficient_quota"}}),
        )
    })
    .await;
    let base = format!("{}/v1", fake.base_url);
    let (_, run) = run_on(
        "openai",
        &[
            ("OPENAI_BASE_URL", &base),
            ("RLM_PROVIDER_MAX_RETRIES", "3"),
        ],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"]["message"],
        "openai answered HTTP 429: You exceeded your current quota (insufficient_quota)"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn the_provider_list_shows_configuration_but_never_keys() {
    let unused = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(
        &unused,
        &[
            ("ANTHROPIC_API_KEY", KEY),
            ("RLM_ANTHROPIC_MAX_CONCURRENCY", "3"),
        ],
    )
    .await;

    let (status, body) = app.get("/v1/providers").await;

    assert_eq!(status, 200);
    assert!(!body.to_string().contains(KEY));
    assert!(!body.to_string().contains(TEST_API_KEY));
    let providers = body["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "openai",
            "azure_openai",
            "anthropic",
            "gemini",
            "openrouter",
            "portkey",
            "litellm"
        ]
    );
    let by_name = |name: &str| {
        providers
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    let anthropic = by_name("anthropic");
    assert_eq!(anthropic["configured"], true);
    assert_eq!(anthropic["default_model"], "claude-sonnet-4-20250514");
    assert_eq!(anthropic["base_url"], "https://api.anthropic.com");
    assert_eq!(anthropic["max_concurrency"], 3);
    let models: Vec<&str> = anthropic["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"claude-sonnet-4") && models.iter().all(|m| m.starts_with("claude")),
        "{models:?}"
    );
    assert_eq!(by_name("gemini")["configured"], false);
    assert_eq!(by_name("openai")["configured"], true);
    assert_eq!(body["default_provider"], "openai");
}

#[tokio::test]
async fn the_provider_cap_holds_for_all_calls_and_waiting_is_visible() {
    let model = FakeModel::with_script(Duration::from_millis(100), |request, _| {
        if request.is_root() {
            code("r = llm_query_batched([str(i) for i in range(6)])\nanswer['content'] = ','.join(r)\nanswer['ready'] = True")
        } else {
            text(format!("r{}", request.last_user_text()))
        }
    })
    .await;
    let app = spawn_app_with(&model, &[("RLM_OPENAI_MAX_CONCURRENCY", "2")]).await;

    let id = app
        .submit_ok(&json!({"prompt": "Fan out.", "limits": {"max_concurrent_subcalls": 6}}))
        .await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["answer"], "r0,r1,r2,r3,r4,r5");
    // The most calls the provider ever had at once.
    let peak = common::fake_model::peak_in_flight(&model.requests());
    assert_eq!(peak, 2);
    let events = app.events(&id, None).await;
    let waits = events
        .iter()
        .filter(|e| e.event == "provider.waiting")
        .count();
    assert!(waits >= 4, "each call past the cap is announced ({waits})");
    assert!(events
        .iter()
        .any(|e| e.event == "provider.acquired"
            && e.data["data"]["waited_ms"].as_u64().unwrap() >= 90));
}

/// How each provider family says "ok" and "no", for the failure table below.
struct Shape {
    provider: &'static str,
    ok: fn() -> Reply,
    error: fn(u16, &str) -> Reply,
}

fn shapes() -> Vec<Shape> {
    fn openai_error(status: u16, message: &str) -> Reply {
        reply(
            status,
            json!({"error": {"message": message, "type": "invalid_request_error", "code": null}}),
        )
    }
    vec![
        Shape {
            provider: "openai",
            ok: || {
                openai_ok(
                    ANSWER_CODE,
                    json!({"prompt_tokens": 1, "completion_tokens": 1}),
                )
            },
            error: openai_error,
        },
        Shape {
            provider: "azure_openai",
            ok: || {
                openai_ok(
                    ANSWER_CODE,
                    json!({"prompt_tokens": 1, "completion_tokens": 1}),
                )
            },
            error: openai_error,
        },
        Shape {
            provider: "openrouter",
            ok: || {
                openai_ok(
                    ANSWER_CODE,
                    json!({"prompt_tokens": 1, "completion_tokens": 1}),
                )
            },
            error: openai_error,
        },
        Shape {
            provider: "anthropic",
            ok: || anthropic_ok(ANSWER_CODE),
            error: |status, message| {
                reply(
                    status,
                    json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                )
            },
        },
        Shape {
            provider: "gemini",
            ok: || gemini_ok(ANSWER_CODE),
            error: |status, message| {
                reply(
                    status,
                    json!({"error": {"code": status, "message": message, "status": "INTERNAL"}}),
                )
            },
        },
    ]
}

fn vars_for(provider: &str, base: &str) -> Vec<(&'static str, String)> {
    match provider {
        "openai" => vec![
            ("OPENAI_BASE_URL", base.to_string()),
            ("OPENAI_API_KEY", KEY.into()),
        ],
        "azure_openai" => vec![
            ("AZURE_OPENAI_ENDPOINT", base.to_string()),
            ("AZURE_OPENAI_API_KEY", KEY.into()),
        ],
        "openrouter" => vec![
            ("OPENROUTER_BASE_URL", base.to_string()),
            ("OPENROUTER_API_KEY", KEY.into()),
        ],
        "anthropic" => vec![
            ("ANTHROPIC_BASE_URL", base.to_string()),
            ("ANTHROPIC_API_KEY", KEY.into()),
        ],
        _ => vec![
            ("GEMINI_BASE_URL", base.to_string()),
            ("GOOGLE_API_KEY", KEY.into()),
        ],
    }
}

async fn run_shape(provider: &str, fake: &FakeHttp) -> Value {
    let vars = vars_for(provider, &fake.base_url);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_on(provider, &vars, json!({"prompt": "Go."})).await.1
}

#[tokio::test]
async fn every_provider_retries_server_errors_and_fails_clearly_on_bad_keys_and_bodies() {
    for shape in shapes() {
        let provider = shape.provider;
        let (ok, error) = (shape.ok, shape.error);

        // 500 twice, then success.
        let fake = FakeHttp::start(move |_, index| {
            if index < 2 {
                error(500, "upstream hiccup")
            } else {
                ok()
            }
        })
        .await;
        let run = run_shape(provider, &fake).await;
        assert_eq!(run["status"], "succeeded", "{provider}: {run}");
        assert_eq!(fake.requests().len(), 3, "{provider}");

        // 401 naming the key: failed at once, the message kept but not the key.
        let fake = FakeHttp::start(move |_, _| error(401, &format!("bad key {KEY}"))).await;
        let run = run_shape(provider, &fake).await;
        assert_eq!(
            (run["status"].as_str(), run["error"]["code"].as_str()),
            (Some("failed"), Some("provider_error")),
            "{provider}"
        );
        let message = run["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{provider} answered HTTP 401: bad key [redacted]")),
            "{provider}: {message}"
        );
        assert_eq!(fake.requests().len(), 1, "{provider}: a 401 is not retried");

        // A body that is not JSON.
        let fake = FakeHttp::start(|_, _| Reply::Raw {
            status: 200,
            headers: vec![],
            body: "<html>proxy error</html>".into(),
        })
        .await;
        let run = run_shape(provider, &fake).await;
        assert_eq!(
            run["error"]["message"],
            format!("{provider} sent a malformed response (HTTP 200): <html>proxy error</html>"),
            "{provider}"
        );
    }
}

#[tokio::test]
async fn azure_v1_puts_the_model_in_the_body_and_openrouter_errors_inside_a_200_fail_clearly() {
    let fake = FakeHttp::start(|_, _| {
        openai_ok(
            ANSWER_CODE,
            json!({"prompt_tokens": 5, "completion_tokens": 2}),
        )
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "azure_openai",
        &[
            ("AZURE_OPENAI_API_KEY", KEY),
            ("AZURE_OPENAI_ENDPOINT", &base),
            ("AZURE_OPENAI_API_VERSION", "v1"),
        ],
        json!({"prompt": "Go.", "model": "my-deployment"}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = &fake.requests()[0];
    assert_eq!(seen.target, "/openai/v1/chat/completions");
    assert_eq!(seen.body["model"], "my-deployment");
    assert_eq!(seen.header("api-key").as_deref(), Some(KEY));

    let fake = FakeHttp::start(|_, _| {
        reply(
            200,
            json!({"error": {"code": 502, "message": "upstream model went away"}}),
        )
    })
    .await;
    let base = fake.base_url.clone();
    let (_, run) = run_on(
        "openrouter",
        &[
            ("OPENROUTER_API_KEY", KEY),
            ("OPENROUTER_BASE_URL", &base),
            ("RLM_PROVIDER_MAX_RETRIES", "1"),
        ],
        json!({"prompt": "Go."}),
    )
    .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"]["message"],
        "openrouter answered HTTP 502: upstream model went away"
    );
    assert_eq!(
        fake.requests().len(),
        2,
        "a 502 inside a 200 is retried like a 502"
    );
}

#[tokio::test]
async fn reasoning_tokens_are_counted_and_a_cut_off_reply_is_marked() {
    let fake = FakeHttp::start(|_, index| {
        if index == 0 {
            reply(200, json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me think about"},
                "finish_reason": "length"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 50, "completion_tokens_details": {"reasoning_tokens": 42}}}))
        } else {
            openai_ok(ANSWER_CODE, json!({"prompt_tokens": 10, "completion_tokens": 5}))
        }
    })
    .await;
    let base = format!("{}/v1", fake.base_url);
    let unused = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&unused, &[("OPENAI_BASE_URL", &base)]).await;

    let id = app.submit_ok(&json!({"prompt": "Think."})).await;
    let run = app.wait_for_end(&id).await;

    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["usage"]["reasoning_tokens"], 42);
    let trajectory = app.trajectory(&id).await;
    assert_eq!(
        trajectory["iterations"][0]["reply"],
        "Let me think about\n\n[rlmd: this reply was cut off at the model's output token limit]"
    );
}
