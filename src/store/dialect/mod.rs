//! The SQL that differs between the two backends. Everything else in `store` is written once,
//! in the SQL both accept (`$1` placeholders, integers for booleans, `RETURNING`).

mod postgres;
mod sqlite;

pub(super) use postgres::POSTGRES;
pub(super) use sqlite::SQLITE;

/// One backend's statements and fragments.
pub(super) struct Dialect {
    pub name: &'static str,
    /// Starts a transaction that writes.
    pub begin_write: &'static str,
    /// Run before a claim, in its transaction, so that claims (and the per-key and
    /// session-order rules they check) happen one at a time across every node.
    pub serialize_claims: Option<&'static str>,
    /// Appended to the subquery that picks rows to claim or reap (`q`): rows another
    /// transaction holds are skipped rather than waited for.
    pub skip_locked: &'static str,
    /// Locks a tree's root row (`$1`) for the rest of the transaction, so that writes that
    /// touch several runs of one tree always lock the root first and cannot deadlock.
    pub lock_tree: Option<&'static str>,
    /// A run's usage over its calls (`c`, correlated on `r.id`) as one JSON array:
    /// `[input, output, cached, reasoning, calls, cost]`.
    pub run_usage: &'static str,
}
