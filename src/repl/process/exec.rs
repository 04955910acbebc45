//! Running one block: the child's messages until its end, with the model calls it makes
//! answered and what it prints streamed meanwhile.

use std::time::{Duration, Instant};

use super::{bounds, unexpected, Host, ReplError, ReplProcess};
use crate::repl::protocol::{ExecOutcome, FromChild, ToChild};

impl ReplProcess {
    /// Runs one block. `timeout` counts only the time the child computes: while it waits
    /// for a model call that it asked for, the clock stops.
    pub async fn exec(
        &mut self,
        code: &str,
        output_chars: usize,
        timeout: Duration,
        host: &impl Host,
    ) -> Result<ExecOutcome, ReplError> {
        self.send(&ToChild::Exec {
            code: code.to_string(),
            output_chars,
        })
        .await?;
        let mut remaining = timeout;
        // What reaches live subscribers is bounded like what the model sees.
        let mut streamed = bounds::Budget::new(output_chars);
        loop {
            let started = Instant::now();
            let message = match tokio::time::timeout(remaining, self.receive()).await {
                Ok(message) => message?,
                Err(_) => {
                    self.kill().await;
                    return Err(ReplError::Timeout(timeout));
                }
            };
            remaining = remaining.saturating_sub(started.elapsed());
            match message {
                FromChild::HostCall { call } => {
                    let mut ended = None;
                    let reply = match self.limits.check_call(call) {
                        Ok(call) => {
                            // What the block prints while the call is made still streams.
                            // Its end too may come (the call was another thread's).
                            let call = host.call(call);
                            tokio::pin!(call);
                            loop {
                                tokio::select! {
                                    reply = &mut call => break reply,
                                    message = self.receive() => match message? {
                                        FromChild::Output { stream, text } => {
                                            stream_output(&mut streamed, host, &stream, &text)
                                        }
                                        FromChild::ExecDone(outcome) => ended = Some(outcome),
                                        other => return Err(unexpected("output", &other)),
                                    },
                                }
                            }
                        }
                        Err(refused) => Err(refused),
                    };
                    let (ok, value) = match reply {
                        Ok(value) => (true, value),
                        Err(message) => (false, serde_json::Value::String(message)),
                    };
                    self.send(&ToChild::HostReply { ok, value }).await?;
                    if let Some(outcome) = ended {
                        return Ok(self.limits.outcome(outcome, output_chars));
                    }
                }
                FromChild::Output { stream, text } => {
                    stream_output(&mut streamed, host, &stream, &text)
                }
                FromChild::ExecDone(outcome) => {
                    return Ok(self.limits.outcome(outcome, output_chars));
                }
                other => return Err(unexpected("a block's end", &other)),
            }
        }
    }
}

/// Passes on what a running block printed, within what live subscribers may see.
fn stream_output(streamed: &mut bounds::Budget, host: &impl Host, stream: &str, text: &str) {
    if let Some(text) = streamed.admit(text) {
        host.output(
            if stream == "stderr" {
                "stderr"
            } else {
                "stdout"
            },
            text,
        );
    }
}
