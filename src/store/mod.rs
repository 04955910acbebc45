//! Persistence: runs, their trajectories and their events, through sqlx, in SQLite (the
//! embedded default, one node) or PostgreSQL (several nodes on one database).
//!
//! Each file owns the SQL of one concern: `runs` (submit, read, list, cancel), `lease`
//! (claim, heartbeat, finish: everything a worker does to a job, fenced by its lease),
//! `events` and `trajectory`. That SQL is written once, in what both backends accept; the
//! few statements that differ live in `dialect/sqlite.rs` and `dialect/postgres.rs`.

mod cache;
mod comparisons;
mod contexts;
mod dialect;
mod events;
mod group_commit;
mod idempotency;
mod keys;
mod lease;
mod live;
mod page;
mod runs;
mod sessions;
mod signals;
mod submit;
mod trajectory;
mod tree;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};

use dialect::Dialect;

pub use cache::CacheEntry;
pub use comparisons::{Comparison, ComparisonSummary, TargetSummary};
pub use contexts::{ContextEntry, RunContext, StoredContext, CHUNK_BYTES};
pub use events::StoredEvent;
pub use idempotency::{Earlier, IdempotencyKey};
pub use keys::{ApiKey, KeyId, NewKey};
pub use lease::{ClaimedRun, Finish, LeaseState};
pub use runs::{CancelOutcome, ListFilter, NewRun, RunRecord, Usage, PREVIEW_CHARS};
pub use sessions::{SessionRecord, SessionStatus};
pub use signals::{Signal, Signals};
pub use submit::Submitted;
pub use trajectory::{CodeBlockRecord, IterationRecord, LlmCallRecord, Trajectory, Write};
pub use tree::total as total_usage;

use crate::domain::RunId;

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
    #[error("DATABASE_URL must start with sqlite: or postgres:// (got {0:?})")]
    UnknownBackend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Connections that read a SQLite file at once.
const SQLITE_READERS: u32 = 4;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL, everything).
    pool: AnyPool,
    /// Writes. On SQLite one connection: the file takes one writer at a time anyway, and
    /// writers waiting on each other inside SQLite (busy retries, a thread each) cost far
    /// more than waiting in line for the connection. Reads never wait for it (WAL).
    writer: AnyPool,
    sql: &'static Dialect,
    /// The URL connected to (with, on PostgreSQL, this node's name as application_name).
    url: Arc<str>,
    /// On PostgreSQL, this node's name: the notices its transactions send carry it.
    node: Option<Arc<str>>,
    /// On SQLite, where runs' records go to be written together (see `group_commit`).
    group_commit: Option<Arc<group_commit::GroupCommit>>,
}

impl Store {
    /// Opens the database that `database_url` names (a SQLite file is created if missing)
    /// and brings its schema up to date.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let sql = backend_of(database_url)?;
        let (pool, writer, url, node) = if sql.name == "sqlite" {
            (
                connect_sqlite(database_url, SQLITE_READERS).await?,
                connect_sqlite(database_url, 1).await?,
                database_url.into(),
                None,
            )
        } else {
            let node = format!("rlmd-{:016x}", fastrand::u64(..));
            let separator = if database_url.contains('?') { '&' } else { '?' };
            let url = format!("{database_url}{separator}application_name={node}");
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .min_connections(1)
                .connect(&url)
                .await?;
            (pool.clone(), pool, url.into(), Some(node.into()))
        };
        let mut store = Self {
            pool,
            writer,
            sql,
            url,
            node,
            group_commit: None,
        };
        store.migrate().await?;
        if sql.name == "sqlite" {
            let group = group_commit::GroupCommit::start(store.clone());
            store.group_commit = Some(Arc::new(group));
        }
        Ok(store)
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.sql.name {
            "sqlite" => &SQLITE_MIGRATIONS,
            _ => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Which backend this store is on: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.sql.name
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A transaction that writes (see the dialects for how each backend begins one).
    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.writer.begin_with(self.sql.begin_write).await?)
    }

    /// Locks the tree rooted at `root_id` for the rest of the transaction (PostgreSQL; a
    /// SQLite write transaction already holds the whole database).
    async fn lock_tree(&self, conn: &mut sqlx::AnyConnection, root_id: RunId) -> StoreResult<()> {
        if let Some(lock) = self.sql.lock_tree {
            sqlx::query(lock)
                .bind(root_id.to_string())
                .fetch_optional(conn)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

fn backend_of(database_url: &str) -> StoreResult<&'static Dialect> {
    if database_url.starts_with("sqlite:") {
        Ok(&dialect::SQLITE)
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(&dialect::POSTGRES)
    } else {
        let scheme = database_url.split(':').next().unwrap_or_default();
        Err(StoreError::UnknownBackend(scheme.to_string()))
    }
}

/// SQLite through the `Any` driver, which takes only a URL: the file is created (in WAL
/// mode, which the file keeps) with the native driver first, and each pooled connection
/// gets its per-connection settings as it opens.
async fn connect_sqlite(database_url: &str, connections: u32) -> StoreResult<AnyPool> {
    let mut create = SqliteConnectOptions::from_str(database_url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    create.execute("SELECT 1").await?;
    create.close().await?;
    Ok(AnyPoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        // A local file does not drop a connection: pinging one before each use (the
        // default) was a round trip to its thread on every query and transaction.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                     PRAGMA synchronous = NORMAL;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(database_url)
        .await?)
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
