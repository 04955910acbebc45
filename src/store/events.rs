//! Progress events. Each tree of runs numbers its events 1, 2, 3, … so that a stream can
//! resume from the last number it saw (`Last-Event-ID`) without a gap.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::runs::parse_id;
use super::{now_ms, Store, StoreError, StoreResult};
use crate::domain::RunId;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub root_id: RunId,
    pub run_id: RunId,
    pub seq: i64,
    pub kind: String,
    pub data: Value,
    pub created_at: i64,
}

impl StoredEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "run.succeeded" | "run.failed" | "run.cancelled"
        )
    }
}

/// Appends an event. Its sequence number comes from a counter on the tree's root row,
/// which the increment keeps locked until the transaction ends: writers to one tree (a run
/// and its children, on any node) can never take the same number, and every number below a
/// committed one is committed too. Every event's data carries its run's `depth`, so a root's
/// stream can tell its descendants apart.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    root_id: RunId,
    run_id: RunId,
    kind: &str,
    data: &Value,
) -> StoreResult<StoredEvent> {
    let mut stored = insert_many(conn, root_id, run_id, &[(kind, data)]).await?;
    stored
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an event was not stored".into()))
}

/// Appends events of one run, in order: the counter moves once for all of them and they
/// go in as one statement (a run records several at each step).
pub(super) async fn insert_many(
    conn: &mut AnyConnection,
    root_id: RunId,
    run_id: RunId,
    events: &[(&str, &Value)],
) -> StoreResult<Vec<StoredEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let created_at = now_ms();
    let (last, depth): (i64, i64) = sqlx::query_as(
        "UPDATE runs SET event_seq = event_seq + $3 WHERE id = $1 \
         RETURNING event_seq, (SELECT depth FROM runs WHERE id = $2)",
    )
    .bind(root_id.to_string())
    .bind(run_id.to_string())
    .bind(events.len() as i64)
    .fetch_one(&mut *conn)
    .await?;
    let first = last - events.len() as i64 + 1;
    let stored: Vec<StoredEvent> = events
        .iter()
        .zip(first..)
        .map(|((kind, data), seq)| {
            let mut data = (*data).clone();
            if let Value::Object(map) = &mut data {
                map.insert("depth".into(), depth.into());
            }
            StoredEvent {
                root_id,
                run_id,
                seq,
                kind: kind.to_string(),
                data,
                created_at,
            }
        })
        .collect();
    let rows: Vec<String> = (0..stored.len())
        .map(|i| {
            format!(
                "($1, $2, $3, ${}, ${}, ${})",
                4 + 3 * i,
                5 + 3 * i,
                6 + 3 * i
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO events (root_id, run_id, created_at, seq, type, data) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(root_id.to_string())
        .bind(run_id.to_string())
        .bind(created_at);
    for event in &stored {
        query = query
            .bind(event.seq)
            .bind(event.kind.as_str())
            .bind(event.data.to_string());
    }
    query.execute(&mut *conn).await?;
    Ok(stored)
}

impl Store {
    /// Events of a run after `after_seq`, in order: for a root, those of its whole tree.
    pub async fn events_after(
        &self,
        run_id: RunId,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT root_id, run_id, seq, type, data, created_at FROM events \
             WHERE (root_id = $1 OR run_id = $1) AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id.to_string())
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The events of type `kind` of one run, in order.
    pub async fn run_events(&self, run_id: RunId, kind: &str) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT root_id, run_id, seq, type, data, created_at FROM events \
             WHERE run_id = $1 AND type = $2 ORDER BY seq",
        )
        .bind(run_id.to_string())
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

fn event_from_row(row: &AnyRow) -> StoreResult<StoredEvent> {
    let data: String = row.try_get("data")?;
    Ok(StoredEvent {
        root_id: parse_id(row.try_get("root_id")?)?,
        run_id: parse_id(row.try_get("run_id")?)?,
        seq: row.try_get("seq")?,
        kind: row.try_get("type")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
    })
}
