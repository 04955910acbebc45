//! The original examples, posted over HTTP exactly as `examples/run.sh` posts them, with a
//! scripted model that writes the analysis code a good model would write.

mod common;

use common::*;
use serde_json::Value;

/// The body of `examples/NAME.json` with `@data/FILE` contexts replaced by the file's text.
fn example_body(name: &str) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut body: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    if let Some(file) = body["context"].as_str().and_then(|c| c.strip_prefix('@')) {
        body["context"] = Value::String(std::fs::read_to_string(dir.join(file)).unwrap());
    }
    body
}

async fn run_example(name: &str, code_turns: &[&str]) -> Value {
    let replies = code_turns.iter().map(|c| code(c)).collect();
    let model = FakeModel::start(replies, |_| text("unused")).await;
    let app = spawn_app(&model).await;
    let id = app.submit_ok(&example_body(name)).await;
    let run = app.wait_for_end(&id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    run
}

#[tokio::test]
async fn example_01_quickstart_computes_fibonacci_in_code() {
    let run = run_example(
        "01_quickstart",
        &["a, b = context['first_two_terms']\nfib = [a, b]\nwhile len(fib) < context['count']:\n    fib.append(fib[-1] + fib[-2])\nanswer['content'] = str(fib)\nanswer['ready'] = True"],
    )
    .await;
    assert_eq!(
        run["answer"],
        "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]"
    );
}

#[tokio::test]
async fn example_02_searches_the_contracts_in_code() {
    let run = run_example(
        "02_context_as_variable",
        &[
            "import re\ncontracts = [c for c in context.split('---') if c.strip()]\nprint(len(contracts))",
            "big = []\nfor c in contracts:\n    number = re.search(r'CONTRACT #(\\d+)', c).group(1)\n    cap = int(re.search(r'Liability Cap: \\$([\\d,]+)', c).group(1).replace(',', ''))\n    if cap >= 1_000_000:\n        big.append((number, cap))\nanswer['content'] = ', '.join(f'#{n}: ${c:,}' for n, c in big) + f'; total ${sum(c for _, c in big):,}'\nanswer['ready'] = True",
        ],
    )
    .await;
    assert_eq!(
        run["answer"],
        "#2002: $1,500,000, #2004: $1,000,000, #2005: $3,250,000; total $5,750,000"
    );
}

#[tokio::test]
async fn example_04_parses_the_server_logs_in_code() {
    let run = run_example(
        "04_data_analysis",
        &[
            "import re\nfrom collections import defaultdict\nrows = defaultdict(list)\nfor line in context.splitlines():\n    m = re.match(r'(\\S+ \\S+) \\w+ (\\S+) CPU: (\\d+)% MEM: (\\d+)% DISK: \\d+% REQ: \\d+/min LATENCY: (\\d+)ms STATUS: (\\w+)', line)\n    if m:\n        rows[m.group(2)].append(m.groups())\nprint({s: len(r) for s, r in rows.items()})",
            "import statistics as st\nparts = []\nfor server, rs in sorted(rows.items()):\n    cpu = st.mean(int(r[2]) for r in rs)\n    lat = st.mean(int(r[4]) for r in rs)\n    crit = sum(r[5] == 'CRITICAL' for r in rs)\n    parts.append(f'{server} cpu={cpu:.2f} latency={lat:.2f} critical={crit}')\npeak = max((int(r[2]), r[0], s) for s, rs in rows.items() for r in rs)\nanswer['content'] = '; '.join(parts) + f'; peak {peak[0]}% on {peak[2]} at {peak[1]}'\nanswer['ready'] = True",
        ],
    )
    .await;
    assert_eq!(
        run["answer"],
        "app-01 cpu=41.75 latency=66.12 critical=0; app-02 cpu=74.62 latency=338.12 critical=2; \
         db-01 cpu=66.00 latency=57.25 critical=0; peak 97% on app-02 at 2024-09-14 14:20:04"
    );
}

#[tokio::test]
async fn example_05_runs_its_financial_tools_in_code() {
    let run = run_example(
        "05_custom_tools",
        &["a = compound_interest(100000, 0.07, 20)\nloan = loan_payment(100000, 0.065, 20)\nb = compound_interest(100000, 0.09, 20)\n\
           net_a = a['interest_earned']\nnet_b = round(b['final_amount'] - loan['total_paid'], 2)\n\
           answer['content'] = f\"A {net_a:,.2f}; B pays {loan['monthly_payment']:,.2f}/month, nets {net_b:,.2f}\"\nanswer['ready'] = True"],
    )
    .await;
    assert_eq!(
        run["answer"],
        "A 303,873.88; B pays 745.57/month, nets 421,977.60"
    );
}

#[tokio::test]
async fn examples_03_and_06_are_accepted_with_recursion_and_compaction() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(&model, &[("RLM_WORKERS", "0")]).await;
    let (status, run) = app
        .submit(&example_body("03_recursive_decomposition"))
        .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["max_depth"], 2);
    let (status, run) = app.submit(&example_body("06_compaction")).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["compaction"]["threshold_pct"], 0.5);
}

#[tokio::test]
async fn example_07_is_a_comparison_body_the_server_accepts() {
    let model = FakeModel::start(vec![text("unused")], |_| text("unused")).await;
    let app = spawn_app_with(
        &model,
        &[
            ("RLM_WORKERS", "0"),
            ("ANTHROPIC_API_KEY", "k"),
            ("GOOGLE_API_KEY", "k"),
        ],
    )
    .await;
    let (status, body) = app
        .submit_to("/v1/comparisons", &example_body("07_multi_provider"))
        .await;
    assert_eq!(status, 202, "{body}");
    let providers: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["openai", "anthropic", "gemini"]);
}
