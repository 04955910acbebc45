//! `--follow`: a run's events as progress, until it ends. On a terminal, one status line
//! redrawn in place (iteration, calls, tokens, cost, elapsed); otherwise a plain line per
//! step, fit for logs. A dropped stream is picked up again where it stopped (Last-Event-ID).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::client::{CliError, Client};

/// One Server-Sent Event of the run's stream.
struct SseEvent {
    id: i64,
    kind: String,
    data: Value,
}

/// How far the run has got, as the status line shows it.
#[derive(Default)]
struct Progress {
    iteration: u64,
    calls: i64,
    tokens: i64,
    cost_usd: f64,
}

/// Follows run `id` until its terminal event; shows progress on stderr.
pub async fn follow(client: &Client, id: &str) -> Result<(), CliError> {
    let live = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut progress = Progress::default();
    let mut last_id = None;
    let mut refreshed = Instant::now() - Duration::from_secs(60);
    let mut failures = 0;
    loop {
        let path = format!("/v1/runs/{id}/events");
        let mut response = match client.send(Method::GET, &path, None, last_id).await {
            Ok(response) => response,
            Err(error @ CliError::Api { .. }) => return Err(error),
            Err(error) if failures >= 5 => return Err(error),
            Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut parser = Parser::default();
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                // The stream ended or broke: resume after the last event seen.
                Ok(None) | Err(_) => break,
            };
            failures = 0;
            for event in parser.feed(&chunk) {
                last_id = Some(event.id);
                progress.count(&event);
                if event.data["depth"].as_u64().unwrap_or(0) == 0 && is_end(&event.kind) {
                    if live {
                        eprintln!();
                    }
                    return Ok(());
                }
                if live {
                    // The tree's spending, read at most twice a second.
                    if refreshed.elapsed() > Duration::from_millis(500) {
                        refreshed = Instant::now();
                        if let Ok(run) = client
                            .json(Method::GET, &format!("/v1/runs/{id}"), None)
                            .await
                        {
                            progress.spent(&run);
                        }
                    }
                    eprint!("\r\x1b[2K{}", progress.line(started.elapsed()));
                    let _ = std::io::stderr().flush();
                } else if let Some(line) = plain_line(&event) {
                    eprintln!("{line}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_end(kind: &str) -> bool {
    matches!(kind, "run.succeeded" | "run.failed" | "run.cancelled")
}

impl Progress {
    fn count(&mut self, event: &SseEvent) {
        let data = &event.data;
        match event.kind.as_str() {
            "iteration.started" if data["depth"].as_u64().unwrap_or(0) == 0 => {
                self.iteration = data["iteration"].as_u64().unwrap_or(self.iteration);
            }
            "llm.called" => {
                self.calls += 1;
                self.tokens += data["input_tokens"].as_i64().unwrap_or(0)
                    + data["output_tokens"].as_i64().unwrap_or(0);
                self.cost_usd += data["cost_usd"].as_f64().unwrap_or(0.0);
            }
            _ => {}
        }
    }

    /// The whole tree's figures, from the run's view (sub-calls included).
    fn spent(&mut self, run: &Value) {
        let usage = &run["tree"]["usage"];
        if let Some(calls) = usage["llm_calls"].as_i64() {
            self.calls = calls;
            self.tokens = usage["total_tokens"].as_i64().unwrap_or(self.tokens);
            self.cost_usd = usage["cost_usd"].as_f64().unwrap_or(self.cost_usd);
        }
    }

    fn line(&self, elapsed: Duration) -> String {
        format!(
            "iteration {} · {} calls · {} tokens · ${:.4} · {:.1}s",
            self.iteration,
            self.calls,
            self.tokens,
            self.cost_usd,
            elapsed.as_secs_f64()
        )
    }
}

/// A log line for one event, or nothing for the chatty ones.
fn plain_line(event: &SseEvent) -> Option<String> {
    let data = &event.data;
    let depth = data["depth"].as_u64().unwrap_or(0);
    let at = if depth > 0 {
        format!("[depth {depth}] ")
    } else {
        String::new()
    };
    let line = match event.kind.as_str() {
        "run.started" => "started".to_string(),
        "iteration.started" => format!("iteration {}", data["iteration"]),
        "llm.called" => format!(
            "model call: {} in, {} out, ${:.4}",
            data["input_tokens"],
            data["output_tokens"],
            data["cost_usd"].as_f64().unwrap_or(0.0)
        ),
        "code.executed" => format!(
            "code block {} ran in {} ms{}",
            data["block"],
            data["duration_ms"],
            if data["error"].is_string() {
                " (error)"
            } else {
                ""
            }
        ),
        "subcalls.started" => format!("{} sub-call(s) to {}", data["count"], data["model"]),
        "child.started" => format!("child run started on {}", data["model"]),
        "child.finished" => format!("child run {}", data["status"]),
        "run.requeued" | "run.resumed" | "repl.reset" | "run.final_call" => event.kind.clone(),
        _ => return None,
    };
    Some(format!("{at}{line}"))
}

/// Splits a byte stream into events (`id:`, `event:`, `data:` lines; a blank line ends
/// one). Comments (keep-alives) are skipped.
#[derive(Default)]
struct Parser {
    buffer: String,
    id: Option<i64>,
    kind: String,
    data: String,
}

impl Parser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let (Some(id), false) = (self.id, self.data.is_empty()) {
                    // `data:` is the envelope `{seq, type, run_id, created_at, data}`.
                    let mut envelope: Value =
                        serde_json::from_str(&self.data).unwrap_or(Value::Null);
                    events.push(SseEvent {
                        id,
                        kind: std::mem::take(&mut self.kind),
                        data: envelope["data"].take(),
                    });
                }
                self.data.clear();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = value.parse().ok(),
                "event" => self.kind = value.to_string(),
                "data" => self.data.push_str(value),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_put_together() {
        let mut parser = Parser::default();
        assert!(parser
            .feed(b": keep-alive\n\nid: 1\nevent: run.started\nda")
            .is_empty());
        let events =
            parser.feed(b"ta: {\"data\": {\"depth\": 0}}\n\nid: 2\nevent: x\ndata: {}\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].id, events[0].kind.as_str()), (1, "run.started"));
        assert_eq!(events[0].data["depth"], 0);
        assert_eq!(events[1].id, 2);
    }
}
