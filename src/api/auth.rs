//! Who is calling: the `Authorization: Bearer <key>` of every `/v1` request, checked
//! against the stored hashes, and what that caller may see. CORS lives here too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::error::ApiError;
use super::AppState;
use crate::config::{AuthConfig, AuthMode};
use crate::store::{KeyId, Store};

/// The server's side of authentication: its mode and the limits keys default to.
pub struct Auth {
    mode: AuthMode,
    max_queued_runs: Option<u32>,
    /// Set once a key is seen. Keys are revoked, never deleted, so it never goes back to
    /// false; until then every request looks (one indexed query), so a key made by
    /// `rlmd keys create` while the server runs takes effect at once.
    keys_exist: AtomicBool,
    metrics_public: bool,
}

/// Who made a request, as the handlers see it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Authentication is off, or no key exists yet: everything is visible and what is
    /// made has no owner.
    Open,
    Key {
        id: KeyId,
        admin: bool,
        /// The key's own limit, or the server's default.
        max_queued_runs: Option<u32>,
    },
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            mode: config.mode,
            max_queued_runs: config.max_queued_runs,
            keys_exist: AtomicBool::new(false),
            metrics_public: config.metrics_public,
        }
    }

    /// True when requests must carry a key.
    pub async fn required(&self, store: &Store) -> Result<bool, ApiError> {
        if self.mode == AuthMode::Off {
            return Ok(false);
        }
        if self.keys_exist.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let exist = store.any_key_exists().await?;
        if exist {
            self.keys_exist.store(true, Ordering::Relaxed);
        }
        Ok(exist)
    }

    /// `/metrics` is open when keys are off or the operator made it public; otherwise any
    /// valid key reads it (a scraper needs no admin key: metrics hold no tenant's data,
    /// only counts by status, provider and model).
    pub async fn check_metrics_reader(
        &self,
        store: &Store,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        if self.metrics_public {
            return Ok(());
        }
        self.caller(store, headers).await.map(drop)
    }

    async fn caller(&self, store: &Store, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if !self.required(store).await? {
            return Ok(Caller::Open);
        }
        let token = bearer(headers).ok_or_else(|| {
            ApiError::Unauthorized(
                "this server needs an API key: send `Authorization: Bearer <key>`".into(),
            )
        })?;
        let key = store
            .key_by_hash(&crate::keys::hash(token))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the API key is not valid".into()))?;
        if key.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(
                "the API key has been revoked".into(),
            ));
        }
        Ok(Caller::Key {
            id: key.id,
            admin: key.admin,
            max_queued_runs: key.max_queued_runs.or(self.max_queued_runs),
        })
    }
}

impl Caller {
    /// The owner of what this caller makes.
    pub fn owner(&self) -> Option<KeyId> {
        match self {
            Self::Open => None,
            Self::Key { id, .. } => Some(*id),
        }
    }

    /// Whether this caller may see something owned by `owner`. Another key's things, and
    /// things made while authentication was off, are hidden from all but admins.
    pub fn can_see(&self, owner: Option<KeyId>) -> bool {
        match self {
            Self::Open | Self::Key { admin: true, .. } => true,
            Self::Key { id, .. } => owner == Some(*id),
        }
    }

    /// The owner a listing is narrowed to; `None`: everyone's.
    pub fn list_scope(&self) -> Option<KeyId> {
        match self {
            Self::Open | Self::Key { admin: true, .. } => None,
            Self::Key { id, .. } => Some(*id),
        }
    }

    /// How many runs this caller may have queued; `None`: no limit.
    pub fn max_queued_runs(&self) -> Option<u32> {
        match self {
            Self::Open => None,
            Self::Key {
                max_queued_runs, ..
            } => *max_queued_runs,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a /v1 route ran without authentication".into()))
    }
}

/// Middleware: every `/v1` request is authenticated and carries its [`Caller`]; the rest
/// (`/healthz`, `/readyz`) is open.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path != "/v1" && !path.starts_with("/v1/") {
        return next.run(request).await;
    }
    match state.auth.caller(&state.store, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Browsers may call the API from `origins` only; `None` (no layer) when there are none.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::LOCATION, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_bearer_token_is_read() {
        assert_eq!(bearer(&headers("Bearer rlmd_abc")), Some("rlmd_abc"));
        assert_eq!(bearer(&headers("bearer  rlmd_abc ")), Some("rlmd_abc"));
        assert_eq!(bearer(&headers("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
