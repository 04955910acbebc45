//! Sessions: a sequence of runs (turns) that share one REPL namespace.

use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::events::{self, StoredEvent};
use super::keys::KeyId;
use super::page::Page;
use super::runs::{parse_id, ListFilter, PREVIEW_CHARS};
use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::RunId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Open,
    Closed,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for SessionStatus {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        [Self::Open, Self::Closed, Self::Expired]
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| format!("unknown session status {raw:?}: open, closed or expired"))
    }
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: RunId,
    pub status: SessionStatus,
    pub turns: u32,
    pub idle_timeout_ms: i64,
    pub metadata: Value,
    pub created_at: i64,
    pub last_used_at: i64,
    pub closed_at: Option<i64>,
    pub owner: Option<KeyId>,
}

const COLUMNS: &str =
    "id, status, turns, idle_timeout_ms, metadata, created_at, last_used_at, closed_at, owner_key";

impl Store {
    pub async fn create_session(
        &self,
        idle_timeout_ms: i64,
        metadata: &Value,
        owner: Option<KeyId>,
    ) -> StoreResult<SessionRecord> {
        let id = RunId::new();
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO sessions (id, status, idle_timeout_ms, metadata, created_at, last_used_at, \
                 owner_key) VALUES ($1, 'open', $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(idle_timeout_ms)
        .bind(metadata.to_string())
        .bind(now)
        .bind(now)
        .bind(owner.map(|k| k.0))
        .fetch_one(&self.writer)
        .await?;
        session_from_row(&row)
    }

    pub async fn get_session(&self, id: RunId) -> StoreResult<Option<SessionRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Sessions, newest first, each with a preview of its latest turn's prompt.
    pub async fn list_sessions(
        &self,
        filter: &ListFilter<SessionStatus>,
    ) -> StoreResult<Vec<(SessionRecord, Option<String>)>> {
        let columns = COLUMNS.replace(", ", ", s.");
        let page = Page::new(None)
            .text_equals("s.status", filter.status.map(SessionStatus::as_str))
            .text_below("s.id", filter.before.map(|id| id.to_string()))
            .int_equals("s.owner_key", filter.owner.map(|k| k.0));
        let sql = page.sql(
            &format!(
                "SELECT s.{columns}, (SELECT SUBSTR(r.prompt, 1, {}) FROM runs r \
                     WHERE r.session_id = s.id ORDER BY r.turn DESC LIMIT 1) AS preview \
                 FROM sessions s",
                // One more than a preview shows, so the preview knows the prompt goes on.
                PREVIEW_CHARS + 1
            ),
            "s.id",
        );
        let rows = page
            .bind(&sql, filter.limit, filter.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((session_from_row(row)?, row.try_get("preview")?)))
            .collect()
    }

    /// The session's runs, by turn: id and status.
    pub async fn session_runs(&self, id: RunId) -> StoreResult<Vec<(u32, RunId, String)>> {
        let rows =
            sqlx::query("SELECT turn, id, status FROM runs WHERE session_id = $1 ORDER BY turn")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("turn")? as u32,
                    parse_id(row.try_get("id")?)?,
                    row.try_get("status")?,
                ))
            })
            .collect()
    }

    pub async fn touch_session(&self, id: RunId) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2 AND status = 'open'")
            .bind(now_ms())
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Closes an open session and cancels its queued turns. `None` if it was not open.
    pub async fn close_session(
        &self,
        id: RunId,
        status: SessionStatus,
    ) -> StoreResult<Option<Vec<StoredEvent>>> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let closed = sqlx::query(
            "UPDATE sessions SET status = $1, closed_at = $2 WHERE id = $3 AND status = 'open'",
        )
        .bind(match status {
            SessionStatus::Expired => "expired",
            _ => "closed",
        })
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed != 1 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "UPDATE runs SET status = 'cancelled', finished_at = $1, error_code = 'cancelled', \
                 error_message = 'its session was closed' \
             WHERE session_id = $2 AND status = 'queued' RETURNING id, root_id",
        )
        .bind(now)
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut cancelled = Vec::with_capacity(rows.len());
        for row in rows {
            let run_id = parse_id(row.try_get("id")?)?;
            let root_id = parse_id(row.try_get("root_id")?)?;
            let data = json!({"status": "cancelled", "answer": null,
                              "error": {"code": "cancelled", "message": "its session was closed"}});
            cancelled.push(events::insert(&mut tx, root_id, run_id, "run.cancelled", &data).await?);
        }
        tx.commit().await?;
        Ok(Some(cancelled))
    }

    /// Open sessions idle past their timeout, with no turn queued or running.
    pub async fn idle_sessions(&self) -> StoreResult<Vec<RunId>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT s.id FROM sessions s WHERE s.status = 'open' \
               AND s.last_used_at + s.idle_timeout_ms < $1 \
               AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.session_id = s.id \
                               AND r.status IN ('queued', 'running'))",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(parse_id).collect()
    }
}

fn session_from_row(row: &AnyRow) -> StoreResult<SessionRecord> {
    let status: String = row.try_get("status")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(SessionRecord {
        id: parse_id(row.try_get("id")?)?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        turns: row.try_get::<i64, _>("turns")? as u32,
        idle_timeout_ms: row.try_get("idle_timeout_ms")?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        closed_at: row.try_get("closed_at")?,
        owner: row.try_get::<Option<i64>, _>("owner_key")?.map(KeyId),
    })
}
