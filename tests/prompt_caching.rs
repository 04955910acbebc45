//! Provider prompt caching: rlmd marks a root run's system prompt and growing conversation
//! for Anthropic's cache, so each turn reads back what it already sent; cache reads and
//! writes are priced at their own rates, and each run shows what the cache saved.

mod common;

use common::fake_anthropic::{CacheUsage, FakeAnthropic};
use common::fake_http::Seen;
use serde_json::{json, Value};

const MODEL: &str = "claude-sonnet-4-20250514";
const OUTPUT_TOKENS: i64 = 50;
/// Claude Sonnet 4, USD per million tokens: input, cache read, cache write, output.
const PRICES: (f64, f64, f64, f64) = (3.0, 0.3, 3.75, 15.0);
const MARKER: &str = r#""cache_control":{"type":"ephemeral"}"#;

fn is_root(seen: &Seen) -> bool {
    seen.body.get("system").is_some()
}

/// Turns 1 to 3 print a few thousand characters (turn 1 also asks a sub-call); turn 4
/// answers.
fn script(seen: &Seen) -> String {
    if !is_root(seen) {
        return "a sub-answer".into();
    }
    let turn = seen.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count()
        + 1;
    let code = match turn {
        1 => "print(llm_query('a side question'))\nprint('x' * 6000)".to_string(),
        2 | 3 => format!("print('{}' * 6000)", turn),
        _ => "answer['content'] = 'done'\nanswer['ready'] = True".to_string(),
    };
    format!("Next step.\n```repl\n{code}\n```")
}

fn dollars(usage: CacheUsage, output: i64) -> f64 {
    let (input, read, write, out) = PRICES;
    (usage.input as f64 * input
        + usage.read as f64 * read
        + usage.written as f64 * write
        + output as f64 * out)
        / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn a_root_run_marks_its_prompt_for_the_cache_and_each_turn_reads_the_last_one_back() {
    let fake = FakeAnthropic::start(OUTPUT_TOKENS, script).await;
    let app = fake.app().await;
    let id = app
        .submit_ok(&json!({"prompt": "Work it out.", "provider": "anthropic", "model": MODEL}))
        .await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let requests = fake.http.requests();
    let usages = fake.usages();
    let roots: Vec<usize> = (0..requests.len())
        .filter(|&i| is_root(&requests[i]))
        .collect();
    assert_eq!(roots.len(), 4);
    for &i in &roots {
        let seen = &requests[i];
        // Exactly two breakpoints, in the bytes sent: the system prompt, the last message.
        assert_eq!(seen.raw.matches(MARKER).count(), 2, "{}", seen.raw);
        assert_eq!(seen.body["system"][0]["cache_control"]["type"], "ephemeral");
        let messages = seen.body["messages"].as_array().unwrap();
        let last = messages.last().unwrap();
        assert_eq!(last["content"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(last["content"][0]["type"], "text");
        assert!(
            messages[..messages.len() - 1]
                .iter()
                .all(|m| m["content"].is_string()),
            "earlier messages carry no marker"
        );
    }
    let sub = requests.iter().find(|r| !is_root(r)).unwrap();
    assert!(!sub.raw.contains("cache_control"), "{}", sub.raw);

    // Turn 1 is too short to cache; turn 2 writes its whole prompt; turns 3 and 4 read it
    // back (and what came after it) and write only what they added.
    let root_usage: Vec<CacheUsage> = roots.iter().map(|&i| usages[i]).collect();
    assert_eq!((root_usage[0].read, root_usage[0].written), (0, 0));
    assert!(root_usage[1].read == 0 && root_usage[1].written > 0);
    for turn in 2..4 {
        let before = root_usage[turn - 1];
        assert_eq!(root_usage[turn].read, before.read + before.written);
        assert!(root_usage[turn].written > 0);
    }

    // The run's figures are the calls' own, priced by the table.
    let read: i64 = usages.iter().map(|u| u.read).sum();
    let written: i64 = usages.iter().map(|u| u.written).sum();
    let input: i64 = usages.iter().map(|u| u.input + u.read + u.written).sum();
    let usage = &run["usage"];
    assert_eq!(usage["cached_tokens"], read);
    assert_eq!(usage["cache_write_tokens"], written);
    assert_eq!(usage["input_tokens"], input);
    let cost: f64 = usages.iter().map(|&u| dollars(u, OUTPUT_TOKENS)).sum();
    assert!(close(run["cost_usd"].as_f64().unwrap(), cost), "{run}");
    let (price_in, price_read, price_write, _) = PRICES;
    let saved =
        (read as f64 * (price_in - price_read) - written as f64 * (price_write - price_in)) / 1e6;
    assert!(saved > 0.0);
    assert!(
        close(usage["cache_saved_usd"].as_f64().unwrap(), saved),
        "{run}"
    );
    // What it would have cost without the cache, less what it cost, is what it saved.
    let uncached: f64 = usages
        .iter()
        .map(|u| {
            ((u.input + u.read + u.written) as f64 * price_in + OUTPUT_TOKENS as f64 * PRICES.3)
                / 1e6
        })
        .sum();
    assert!(close(uncached - cost, saved));

    // Each call shows its own; the metrics count them.
    let trajectory = app.trajectory(&id).await;
    let calls: &Vec<Value> = trajectory["llm_calls"].as_array().unwrap();
    let shown: i64 = calls
        .iter()
        .map(|c| c["cache_write_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(shown, written);
    let series = format!(r#"{{provider="anthropic",model="{MODEL}""#);
    let tokens = format!(r#"rlmd_tokens_total{series},direction="cache_write"}} "#);
    assert_eq!(app.metric(&tokens).await, written as f64);
    let gauge = format!("rlmd_prompt_cache_saved_usd{series}}} ");
    assert!((app.metric(&gauge).await - saved).abs() < 1e-6);
}
