//! What Anthropic's prompt cache saves a long root run: a 30-turn run on a fake Anthropic
//! whose cache behaves like the real one (see tests/common/fake_anthropic.rs), each turn
//! printing about 2,000 characters. Prints rlmd's own figures (tokens read from and written
//! to the cache, cost, money saved) beside the cost without caching; asserts nothing.
//!
//!     cargo bench --bench prompt_cache

#[path = "../tests/common/mod.rs"]
mod common;

use common::fake_anthropic::FakeAnthropic;
use common::fake_http::Seen;
use serde_json::json;

const TURNS: usize = 30;
const MODEL: &str = "claude-sonnet-4-20250514";
const OUTPUT_TOKENS: i64 = 150;
/// Claude Sonnet 4, USD per million tokens: input and output (the price table's).
const INPUT_PRICE: f64 = 3.0;
const OUTPUT_PRICE: f64 = 15.0;

fn turn_of(seen: &Seen) -> usize {
    let messages = seen.body["messages"].as_array().unwrap();
    messages.iter().filter(|m| m["role"] == "assistant").count() + 1
}

fn script(seen: &Seen) -> String {
    let code = match turn_of(seen) {
        turn if turn < TURNS => format!(
            "part = context[{start}:{end}]\nprint(part * 40)",
            start = turn % 7,
            end = turn % 7 + 50
        ),
        _ => "answer['content'] = 'done'\nanswer['ready'] = True".to_string(),
    };
    format!("Looking further.\n```repl\n{code}\n```")
}

#[tokio::main]
async fn main() {
    let fake = FakeAnthropic::start(OUTPUT_TOKENS, script).await;
    let app = fake.app().await;
    let context = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let id = app
        .submit_ok(&json!({"prompt": "Read the context.", "context": context,
                           "provider": "anthropic", "model": MODEL, "max_iterations": TURNS}))
        .await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["iterations"], TURNS);

    let usage = &run["usage"];
    let int = |name: &str| usage[name].as_i64().unwrap();
    let (input, read, written) = (
        int("input_tokens"),
        int("cached_tokens"),
        int("cache_write_tokens"),
    );
    let output = int("output_tokens");
    let cost = run["cost_usd"].as_f64().unwrap();
    let saved = usage["cache_saved_usd"].as_f64().unwrap();
    let uncached = (input as f64 * INPUT_PRICE + output as f64 * OUTPUT_PRICE) / 1e6;
    println!("{TURNS}-turn root run on {MODEL} (fake Anthropic with a prompt cache)");
    println!("  root calls                 {}", int("llm_calls"));
    println!("  input tokens               {input}");
    println!(
        "    read from the cache      {read} ({:.1} %)",
        100.0 * read as f64 / input as f64
    );
    println!("    written to the cache     {written}");
    println!("    uncached                 {}", input - read - written);
    println!("  output tokens              {output}");
    println!("  cost with caching          ${cost:.4}");
    println!("  cost without caching       ${uncached:.4}");
    println!(
        "  saved (rlmd's figure)      ${saved:.4} ({:.1} %)",
        100.0 * saved / uncached
    );
    println!("  check: without - with      ${:.4}", uncached - cost);
    for (turn, u) in fake
        .usages()
        .iter()
        .enumerate()
        .filter(|(t, _)| t % 5 == 0 || *t == TURNS - 1)
    {
        println!(
            "    call {:>2}: input {:>6} = read {:>6} + written {:>5} + uncached {:>4}",
            turn + 1,
            u.input + u.read + u.written,
            u.read,
            u.written,
            u.input
        );
    }
}
