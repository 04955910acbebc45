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
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        self.answer(request).await
    }

    /// POSTs raw bytes (a context) to `path`; the server's JSON answer.
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<Value, CliError> {
        let request = self
            .request(Method::POST, path)
            .header("content-type", "application/octet-stream")
            .body(bytes);
        json_of(self.answer(request).await?).await
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<Response, CliError> {
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
        json_of(self.send(method, path, body, None).await?).await
    }

    pub async fn text(&self, path: &str) -> Result<String, CliError> {
        let response = self.send(Method::GET, path, None, None).await?;
        response
            .text()
            .await
            .map_err(|e| CliError::Other(format!("could not read the answer: {e}")))
    }
}

async fn json_of(response: Response) -> Result<Value, CliError> {
    response
        .json()
        .await
        .map_err(|e| CliError::Other(format!("the server's answer is not JSON: {e}")))
}
