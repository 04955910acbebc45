//! Persistence: runs, their trajectories and their events, in SQLite through sqlx.
//!
//! Each file owns the SQL of one concern: `runs` (submit, read, list, cancel), `lease`
//! (claim, heartbeat, finish: everything a worker does to a job, fenced by its lease),
//! `events` and `trajectory`.

mod comparisons;
mod events;
mod keys;
mod lease;
mod live;
mod runs;
mod sessions;
mod trajectory;
mod tree;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use comparisons::Comparison;
pub use events::StoredEvent;
pub use keys::{ApiKey, KeyId, NewKey};
pub use lease::{ClaimedRun, Finish, LeaseState};
pub use runs::{CancelOutcome, ListFilter, NewRun, RunRecord, Usage};
pub use sessions::{SessionRecord, SessionStatus};
pub use trajectory::{CodeBlockRecord, IterationRecord, LlmCallRecord, Trajectory, Write};
pub use tree::total as total_usage;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("a database write task failed: {0}")]
    Task(String),
    #[error("the session is not open")]
    SessionNotOpen,
    #[error("an API key named {0:?} already exists")]
    KeyExists(String),
    #[error("no API key is named {0:?}")]
    NoSuchKey(String),
    #[error("the key already has {limit} runs queued")]
    QueueFull { limit: u32 },
}

pub type StoreResult<T> = Result<T, StoreError>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the database and brings its schema up to date.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A transaction that takes the write lock up front (waiting for it under the busy
    /// timeout), so that it can never fail half-way on a snapshot another writer made stale.
    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data cannot fail")
}
