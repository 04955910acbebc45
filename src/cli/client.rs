//! The HTTP side of the command-line client: rlmd's API at `RLMD_URL`, with `RLMD_API_KEY`.

use reqwest::{Method, Response};
use serde_json::Value;

/// What went wrong, as the user should read it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach rlmd at {url}: {detail} (is it running? set RLMD_URL)")]
    Unreachable { url: String, detail: String },
    /// The server's own error: `{"error": {"code", "message"}}`.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(base: &str, key: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_empty()),
        }
    }

    /// Sends a request; a non-2xx answer becomes the server's error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        last_event_id: Option<i64>,
    ) -> Result<Response, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            detail: e.to_string(),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(CliError::Api {
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the server gave no reason")
                .to_string(),
        })
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Value, CliError> {
        let response = self.send(method, path, body, None).await?;
        response
            .json()
            .await
            .map_err(|e| CliError::Other(format!("the server's answer is not JSON: {e}")))
    }

    pub async fn text(&self, path: &str) -> Result<String, CliError> {
        let response = self.send(Method::GET, path, None, None).await?;
        response
            .text()
            .await
            .map_err(|e| CliError::Other(format!("could not read the answer: {e}")))
    }
}
