//! The HTTP exchange every provider client shares: send, read, classify, and retry the
//! way the providers' own SDKs do. A client only builds its request and reads its answer.

use std::time::Duration;

use reqwest::header::HeaderMap;

use super::retry::{is_retryable_status, should_retry_header, RetryPolicy};
use super::{redact, Completion, ProviderError, RetryObserver, Retrying};
use crate::config::{ProviderSettings, Secret};

/// Whether a failed exchange may be tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Retry {
    /// Never (a bad request, a bad key, an exhausted quota or budget).
    Never,
    /// If the status is one that is retried (408, 409, 429, 5xx) or the server says so.
    ByStatus,
    /// Yes, after at least this long (a wait the provider put in its body).
    After(Duration),
}

/// A failed exchange, read by the client.
pub struct Failure {
    pub error: ProviderError,
    pub retry: Retry,
}

pub struct Http {
    pub name: String,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Keys this client sends, scrubbed from every message it produces.
    secrets: Vec<Secret>,
}

impl Http {
    pub fn new(
        name: &str,
        settings: &ProviderSettings,
        secrets: Vec<Secret>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()?;
        Ok(Self {
            name: name.to_string(),
            client,
            retry: RetryPolicy::from_settings(settings),
            secrets,
        })
    }

    /// Sends the request `build` makes until `read` accepts the answer, a failure may not
    /// be retried, or the retries run out.
    pub async fn exchange(
        &self,
        on_retry: Option<RetryObserver<'_>>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        read: impl Fn(u16, &HeaderMap, &str) -> Result<Completion, Failure>,
    ) -> Result<Completion, ProviderError> {
        let mut retries = 0;
        loop {
            let (failure, headers) = match build(&self.client).send().await {
                Err(error) => (self.transport(&error), None),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    match response.text().await {
                        Err(error) => (self.transport(&error), Some(headers)),
                        Ok(text) => match read(status, &headers, &text) {
                            Ok(completion) => return Ok(completion),
                            Err(failure) => (failure, Some(headers)),
                        },
                    }
                }
            };
            let server_says = headers.as_ref().and_then(should_retry_header);
            let retryable = match (failure.retry, &failure.error) {
                (Retry::Never, _) => false,
                (_, _) if server_says.is_some() => server_says == Some(true),
                (Retry::After(_), _) => true,
                (Retry::ByStatus, ProviderError::Status { status, .. }) => {
                    is_retryable_status(*status)
                }
                (
                    Retry::ByStatus,
                    ProviderError::Timeout { .. } | ProviderError::Transport { .. },
                ) => true,
                (Retry::ByStatus, _) => false,
            };
            if !retryable || retries >= self.retry.max_retries {
                return Err(failure.error);
            }
            let wait = match failure.retry {
                Retry::After(wait) => wait.min(self.retry.max_wait),
                _ => self.retry.delay(retries, headers.as_ref()),
            };
            tracing::warn!(provider = %self.name, retry = retries + 1, wait_ms = wait.as_millis() as u64,
                           error = %failure.error, "retrying model call");
            retries += 1;
            match on_retry {
                Some(observe) => {
                    let notice = self.retrying(&failure.error, retries, wait);
                    tokio::join!(observe(notice), tokio::time::sleep(wait));
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    fn retrying(&self, error: &ProviderError, retries: u32, wait: Duration) -> Retrying {
        let (status, error_kind) = match error {
            ProviderError::Status { status, .. } => (Some(*status), "status"),
            ProviderError::Malformed { status, .. } => (Some(*status), "malformed"),
            ProviderError::Timeout { .. } => (None, "timeout"),
            ProviderError::Transport { .. } => (None, "transport"),
            ProviderError::Empty { .. } => (None, "empty"),
        };
        Retrying {
            provider: self.name.clone(),
            status,
            error_kind,
            // Already scrubbed of keys where it was made.
            error: error.to_string(),
            attempt: retries + 1,
            max_attempts: self.retry.max_retries + 1,
            wait_ms: wait.as_millis() as u64,
        }
    }

    /// An HTTP error with the provider's message (key-free), retried by status.
    pub fn status(&self, status: u16, message: &str, retry: Retry) -> Failure {
        Failure {
            error: ProviderError::Status {
                provider: self.name.clone(),
                status,
                message: self.redact(message),
            },
            retry,
        }
    }

    /// A body that could not be read: the status and a short excerpt.
    pub fn malformed(&self, status: u16, body: &str) -> Failure {
        Failure {
            error: ProviderError::Malformed {
                provider: self.name.clone(),
                status,
                excerpt: self.redact(body),
            },
            retry: Retry::Never,
        }
    }

    /// A reply without content (a refusal, a safety block).
    pub fn empty(&self, reason: impl Into<String>) -> Failure {
        Failure {
            error: ProviderError::Empty {
                provider: self.name.clone(),
                reason: self.redact(&reason.into()),
            },
            retry: Retry::Never,
        }
    }

    fn transport(&self, error: &reqwest::Error) -> Failure {
        let error = if error.is_timeout() {
            ProviderError::Timeout {
                provider: self.name.clone(),
            }
        } else {
            // reqwest names the URL, never headers; the whole chain is kept for diagnosis.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            ProviderError::Transport {
                provider: self.name.clone(),
                message: self.redact(&message),
            }
        };
        Failure {
            error,
            retry: Retry::ByStatus,
        }
    }

    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(redact(text, None), |text, secret| {
                redact(&text, Some(secret.expose()))
            })
    }
}
