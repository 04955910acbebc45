//! Paging of listings (runs, sessions, comparisons): newest first, `limit` items a page,
//! `cursor` (the last id of the page before) or `offset`, and a `status` filter.

use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::domain::RunId;
use crate::store::{ListFilter, PREVIEW_CHARS};

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// Unknown parameters are ignored, as is usual for query strings.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only items in this status (runs: queued, running, succeeded, failed, cancelled;
    /// sessions: open, closed, expired; comparisons have none).
    status: Option<String>,
    /// Items a page, 1 to 100 (default 20).
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
    /// Items to skip.
    offset: Option<String>,
}

impl ListQuery {
    /// The filter these parameters ask for, with `status` parsed as `S`.
    pub fn filter<S: std::str::FromStr<Err = String>>(
        &self,
        owner: Option<crate::store::KeyId>,
    ) -> Result<ListFilter<S>, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<S>().map_err(ApiError::invalid)?),
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_PAGE,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "`limit` must be a number from 1 to {MAX_PAGE}"
                    )))
                }
            },
        };
        let before =
            match self.cursor.as_deref() {
                None | Some("") => None,
                Some(raw) => Some(raw.parse::<RunId>().map_err(|_| {
                    ApiError::invalid("`cursor` is not a cursor this server gave out")
                })?),
            };
        let offset = match self.offset.as_deref() {
            None | Some("") => 0,
            Some(raw) => raw
                .parse::<u32>()
                .map_err(|_| ApiError::invalid("`offset` must be a number of items to skip"))?,
        };
        Ok(ListFilter {
            status,
            before,
            limit,
            offset,
            owner,
        })
    }
}

/// The cursor of the next page: the last id of a full page.
pub fn next_cursor<S>(filter: &ListFilter<S>, ids: &[RunId]) -> Option<String> {
    (ids.len() == filter.limit as usize)
        .then(|| ids.last().map(RunId::to_string))
        .flatten()
}

/// The start of a prompt, for listings (a prompt can be megabytes).
pub fn preview(prompt: &str) -> Value {
    let mut chars = prompt.char_indices();
    match chars.nth(PREVIEW_CHARS) {
        None => Value::String(prompt.to_string()),
        Some((end, _)) => Value::String(format!("{}…", &prompt[..end])),
    }
}

/// A listing whose items have no status: a `status` parameter is refused.
pub struct NoStatus;

impl std::str::FromStr for NoStatus {
    type Err = String;

    fn from_str(_: &str) -> Result<Self, String> {
        Err("this listing has no `status` filter".into())
    }
}
