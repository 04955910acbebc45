//! Webhook delivery: when a root run with a `webhook` ends, rlmd POSTs the run (as
//! `GET /v1/runs/{id}` shows it) to the URL, signed with the run's secret:
//! `X-Rlmd-Signature: sha256=<hex HMAC-SHA256 of the raw body>`. A failed attempt is
//! retried with doubling waits for `RLM_WEBHOOK_RETRY_FOR_S`; each attempt is an event of
//! the run (`webhook.delivered`, `webhook.failed`). Deliveries are claimed through the
//! store, so any node delivers (once; again only if the node delivering it dies).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{is_public, WebhookPolicy};
use crate::domain::{RunId, Webhook};
use crate::events::{EventBus, Live};
use crate::store::Store;

/// How often the store is asked for due deliveries when no run ends here: a run that ends
/// on a node wakes that node's dispatcher at once, so polling only picks up what a stopped
/// or dead node left (claims lapse after minutes), and costs a write now and then, not
/// every other second on every node.
const POLL_EVERY: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Deliveries claimed at once.
const BATCH: u32 = 16;

pub struct Dispatcher {
    pub store: Store,
    pub bus: EventBus,
    pub policy: Arc<WebhookPolicy>,
}

impl Dispatcher {
    /// Delivers until `shutdown`; deliveries still retrying then are given back.
    pub fn spawn(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        let deliveries = tracker.clone();
        tracker.spawn(async move {
            let mut live = self.bus.subscribe();
            let this = Arc::new(self);
            loop {
                match this.store.claim_webhooks(BATCH, this.hold_ms()).await {
                    Ok(ids) => {
                        for id in ids {
                            let this = this.clone();
                            let shutdown = shutdown.clone();
                            deliveries.spawn(async move { this.deliver(id, shutdown).await });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not claim webhook deliveries"),
                }
                // A run ending here is delivered at once; others are found by polling.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                    _ = ended_here(&mut live) => {}
                }
            }
        });
    }

    /// How long a claim is held: one attempt and the longest wait after it, with margin.
    fn hold_ms(&self) -> i64 {
        (self.policy.timeout + MAX_BACKOFF + Duration::from_secs(30)).as_millis() as i64
    }

    async fn deliver(&self, id: RunId, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.attempts(id) => outcome,
            _ = shutdown.cancelled() => Some("pending"),
        };
        let state = match outcome {
            Some(state) => state,
            None => return,
        };
        if let Err(error) = self.store.set_webhook_state(id, state).await {
            tracing::warn!(%error, %id, "could not record a webhook's delivery");
        }
    }

    /// Tries until delivered, refused for good, or out of time: the state to record
    /// (`None` if the run is gone).
    async fn attempts(&self, id: RunId) -> Option<&'static str> {
        let run = match self.store.get_run(id).await {
            Ok(Some(run)) => run,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%error, %id, "could not read a run to deliver its webhook");
                return Some("pending");
            }
        };
        let webhook = run.spec.webhook.clone()?;
        let body = match crate::api::run_detail(&self.store, &run).await {
            Ok(view) => view.to_string(),
            Err(_) => return Some("pending"),
        };
        let event = format!("run.{}", run.status.as_str());
        let started = Instant::now();
        let mut backoff = self.policy.first_backoff;
        for attempt in 1u32.. {
            let result = self.post(&webhook, &body, &event, id, attempt).await;
            let mut data = json!({"url": webhook.url, "attempt": attempt});
            let retry = match &result {
                Ok(status) if (200..300).contains(status) => {
                    data["status"] = json!(status);
                    self.record(&run.root_id, id, "webhook.delivered", data)
                        .await;
                    return Some("delivered");
                }
                Ok(status) => {
                    data["status"] = json!(status);
                    // The receiver refused it: only a passing condition is worth retrying.
                    matches!(status, 408 | 425 | 429) || *status >= 500
                }
                Err(Failure::Refused(why)) => {
                    data["error"] = json!(why);
                    false
                }
                Err(Failure::Transient(why)) => {
                    data["error"] = json!(why);
                    true
                }
            };
            let retry = retry && started.elapsed() + backoff <= self.policy.retry_for;
            data["will_retry"] = json!(retry);
            if retry {
                data["retry_in_ms"] = json!(backoff.as_millis() as u64);
            }
            self.record(&run.root_id, id, "webhook.failed", data).await;
            if !retry {
                return Some("failed");
            }
            if let Err(error) = self.store.hold_webhook(id, self.hold_ms()).await {
                tracing::warn!(%error, %id, "could not extend a webhook's claim");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        unreachable!("the attempts loop returns")
    }

    async fn record(&self, root_id: &RunId, id: RunId, kind: &str, data: Value) {
        match self.store.webhook_event(*root_id, id, kind, &data).await {
            Ok(event) => self.bus.publish(event),
            Err(error) => tracing::warn!(%error, %id, "could not record a webhook attempt"),
        }
    }

    /// One attempt: the receiver's status, or why there was none.
    async fn post(
        &self,
        webhook: &Webhook,
        body: &str,
        event: &str,
        id: RunId,
        attempt: u32,
    ) -> Result<u16, Failure> {
        let url = self.policy.check(&webhook.url).map_err(Failure::Refused)?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(80);
        let address = self.address_of(&host, port).await?;
        // The connection goes to the address just checked, whatever the name resolves to
        // by the time it is made; redirects are not followed (they could point anywhere).
        let client = reqwest::Client::builder()
            .resolve(host.trim_matches(['[', ']']), address)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.policy.timeout)
            .user_agent(concat!("rlmd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-rlmd-event", event)
            .header("x-rlmd-run-id", id.to_string())
            .header("x-rlmd-delivery-attempt", attempt.to_string());
        if let Some(secret) = &webhook.secret {
            request = request.header("x-rlmd-signature", signature(secret, body));
        }
        let response = request
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Failure::Transient(without_url(&e)))?;
        Ok(response.status().as_u16())
    }

    /// The address to connect to: without an allowlist, a name must resolve to public
    /// addresses only.
    async fn address_of(&self, host: &str, port: u16) -> Result<SocketAddr, Failure> {
        let name = host.trim_matches(['[', ']']);
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Failure::Transient(format!("cannot resolve {name}: {e}")))?
            .collect();
        let first = *addresses
            .first()
            .ok_or_else(|| Failure::Transient(format!("{name} has no address")))?;
        if !self.policy.allows(host, port) {
            if let Some(internal) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(Failure::Refused(format!(
                    "{name} resolves to {}, which is not a public address",
                    internal.ip()
                )));
            }
        }
        Ok(first)
    }
}

enum Failure {
    /// Will not work by trying again (a refused address).
    Refused(String),
    /// Might work later (a network error, a timeout).
    Transient(String),
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A request error without its URL (which the run's owner chose, and is in the event).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Resolves when a root run ends on this node.
async fn ended_here(live: &mut tokio::sync::broadcast::Receiver<Arc<Live>>) {
    loop {
        match live.recv().await.as_deref() {
            Ok(Live::Event(event)) if event.is_terminal() && event.run_id == event.root_id => {
                return
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", "what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
