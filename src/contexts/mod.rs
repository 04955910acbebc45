//! Contexts as files, not messages. A context is stored once, by content: its id is the
//! SHA-256 of its bytes, and the database holds the bytes (in chunks, so that every node of
//! a cluster can read them). Each node keeps the large ones it uses as read-only files in
//! its cache directory; a REPL is handed an open, read-only descriptor of the file (or of a
//! sealed memory file, for a small one) and maps it, so that a context never travels
//! through a pipe nor sits in the server's memory.

mod cache;
mod guard;
mod scan;
mod upload;

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use cache::{CacheError, ContextCache, ContextFile, OpenedContext};
pub use guard::{MAX_CONTEXT_DEPTH, MAX_INT_DIGITS};
pub use scan::{group_digits, scan, Scanned};
pub use upload::{receive, Received, UploadError};

/// How the REPL reads a context's bytes into `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContextFormat {
    /// UTF-8 text: `context` is a `str`.
    Text,
    /// One JSON document (a string, a list or an object), as `json.loads` reads it.
    Json,
    /// JSON Lines: `context` is the list of the documents, one per non-blank line.
    Jsonl,
}

impl ContextFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
            Self::Jsonl => "jsonl",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

/// The SHA-256 of a context's bytes, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContextId(String);

impl ContextId {
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id `raw` spells, if it is one (case-insensitive, stored lowercase).
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContextId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| format!("{raw:?} is not a context id"))
    }
}

impl From<ContextId> for String {
    fn from(id: ContextId) -> String {
        id.0
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which stored bytes a run's REPL gets as `context`, how to read them, and what the root
/// model is told they are.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRef {
    pub id: ContextId,
    pub format: ContextFormat,
    pub description: String,
}

impl ContextRef {
    /// A JSON context given inline (a request body, or a child's prompt): checked and
    /// described in one pass.
    pub fn of_json(json: &str) -> Result<Self, String> {
        let scanned = scan(json.as_bytes(), ContextFormat::Json)?;
        Ok(Self {
            id: scanned.id,
            format: ContextFormat::Json,
            description: scanned.description,
        })
    }
}
