//! The database a test runs on: a fresh SQLite file in its directory, or, when
//! `RLMD_TEST_BACKEND=postgres`, a fresh database on the PostgreSQL server named by
//! `RLMD_TEST_POSTGRES_URL` (default: the local one, user `postgres`).

use std::path::Path;

use sqlx::Connection;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// True when this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("RLMD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// The database of the test directory `dir`: new and empty the first time, the same one
/// after (a server restarted in `dir` finds its data). SQLite keeps it in `dir`.
pub fn fresh_url(dir: &Path) -> String {
    if !on_postgres() {
        return format!("sqlite://{}", dir.join("rlmd.db").display());
    }
    let remembered = dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return url;
    }
    let url = fresh_postgres();
    std::fs::write(&remembered, &url).unwrap();
    url
}

/// A new, empty PostgreSQL database, whatever the suite's backend (for what only several
/// nodes on PostgreSQL can show). Works from async and plain code alike.
pub fn fresh_postgres() -> String {
    let admin = std::env::var("RLMD_TEST_POSTGRES_URL").unwrap_or(DEFAULT_ADMIN_URL.into());
    let name = format!("rlmd_test_{}", uuid::Uuid::now_v7().simple());
    let create = format!("CREATE DATABASE {name}");
    let admin_url = admin.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("the test PostgreSQL server answers (is it running?)");
            sqlx::query(&create).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
    })
    .join()
    .unwrap();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap();
    format!("{base}/{name}")
}

/// Every byte the database holds, for searching it for what must never be stored: the
/// SQLite file with its journals, or a PostgreSQL database's data as `pg_dump` prints it.
pub fn dump(url: &str) -> Vec<u8> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        // Read by another process: closing a file descriptor of the database in this one
        // would drop every POSIX lock SQLite holds on it here (a server may be running in
        // this process), and its connections would stop seeing other processes' writes.
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{path}{suffix}");
            if std::path::Path::new(&file).exists() {
                let output = std::process::Command::new("cat")
                    .arg(&file)
                    .output()
                    .unwrap();
                bytes.extend(output.stdout);
            }
        }
        return bytes;
    }
    let output = std::process::Command::new("pg_dump")
        .args(["--data-only", url])
        .output()
        .expect("pg_dump runs");
    assert!(output.status.success(), "pg_dump failed");
    output.stdout
}

/// A pool on the test's database, for reading or changing rows behind the server's back.
/// Its SQL is what both backends accept (`$1` placeholders).
pub async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}
