//! API keys: how they are made and hashed, and the `rlmd keys` commands that manage them.
//!
//! A key is `rlmd_` and 32 random bytes from the OS, in hex. Only its SHA-256 is stored: a
//! key that random cannot be guessed from its hash, so no slow password hash is needed.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use clap::Subcommand;
use sha2::{Digest, Sha256};

use crate::store::{ApiKey, NewKey, Store, StoreError};

const PREFIX: &str = "rlmd_";

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, once (its last line of output).
    Create {
        /// A unique name for the key's holder, e.g. `alice` or `ci-bot`.
        name: String,
        /// The key sees and cancels every run, session and comparison.
        #[arg(long)]
        admin: bool,
        /// Runs of this key running at once (default: RLM_KEY_MAX_CONCURRENT_RUNS).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_concurrent_runs: Option<u32>,
        /// Runs of this key waiting in the queue (default: RLM_KEY_MAX_QUEUED_RUNS).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_queued_runs: Option<u32>,
    },
    /// List the keys (never the keys themselves).
    List,
    /// Revoke a key: requests with it get 401 from now on.
    Revoke { name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("a key name is 1 to 64 letters, digits, '-', '_' or '.' (got {0:?})")]
    InvalidName(String),
    #[error("could not read random bytes from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new key may do; limits left `None` follow the server's defaults.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    pub admin: bool,
    pub max_concurrent_runs: Option<u32>,
    pub max_queued_runs: Option<u32>,
}

/// Creates and stores a key named `name`; returns it with the key itself, which is never
/// stored and cannot be shown again.
pub async fn create(
    store: &Store,
    name: &str,
    options: &KeyOptions,
) -> Result<(ApiKey, String), KeysError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(KeysError::InvalidName(name.to_string()));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeysError::Random(e.to_string()))?;
    let key = format!("{PREFIX}{}", hex(&bytes));
    let record = store
        .insert_key(&NewKey {
            name: name.to_string(),
            hash: hash(&key),
            admin: options.admin,
            max_concurrent_runs: options.max_concurrent_runs,
            max_queued_runs: options.max_queued_runs,
        })
        .await?;
    Ok((record, key))
}

/// The stored form of a key: hex SHA-256.
pub fn hash(key: &str) -> String {
    sha256_hex(key)
}

/// The hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Runs one `rlmd keys` command and returns what it prints (for `create`, the key last).
pub async fn run(command: KeysCommand, store: &Store) -> Result<String, KeysError> {
    match command {
        KeysCommand::Create {
            name,
            admin,
            max_concurrent_runs,
            max_queued_runs,
        } => {
            let options = KeyOptions {
                admin,
                max_concurrent_runs,
                max_queued_runs,
            };
            let (record, key) = create(store, &name, &options).await?;
            Ok(format!(
                "created key {:?} (admin: {}, max concurrent runs: {}, max queued runs: {})\n\
                 Save it now: it is shown only this once and cannot be recovered.\n{key}",
                record.name,
                yes_no(record.admin),
                limit(record.max_concurrent_runs),
                limit(record.max_queued_runs),
            ))
        }
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            if keys.is_empty() {
                return Ok("no keys (the API is open; see `rlmd keys create --help`)".into());
            }
            let mut out = format!(
                "{:<24} {:<5} {:>14} {:>11}  {:<24} {}",
                "NAME", "ADMIN", "MAX_CONCURRENT", "MAX_QUEUED", "CREATED", "REVOKED"
            );
            for key in keys {
                let _ = write!(
                    out,
                    "\n{:<24} {:<5} {:>14} {:>11}  {:<24} {}",
                    key.name,
                    yes_no(key.admin),
                    limit(key.max_concurrent_runs),
                    limit(key.max_queued_runs),
                    time(key.created_at),
                    key.revoked_at.map(time).unwrap_or_else(|| "-".into()),
                );
            }
            Ok(out)
        }
        KeysCommand::Revoke { name } => {
            let key = store.revoke_key(&name).await?;
            Ok(format!(
                "revoked key {:?} at {}",
                key.name,
                time(key.revoked_at.unwrap_or_default())
            ))
        }
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "no"
    }
}

fn limit(value: Option<u32>) -> String {
    value.map_or_else(|| "default".into(), |n| n.to_string())
}

fn time(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
