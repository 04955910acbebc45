//! PostgreSQL: several nodes on one database. Claims skip rows other nodes hold, trees are
//! locked root first, and changes are announced with `NOTIFY` when they commit.

use super::Dialect;

pub(in crate::store) const POSTGRES: Dialect = Dialect {
    name: "postgres",
    begin_write: "BEGIN",
    // A transaction-scoped advisory lock: released at commit or rollback, never leaked.
    serialize_claims: Some("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(7271081)) AS l"),
    skip_locked: " FOR UPDATE OF q SKIP LOCKED",
    // NO KEY UPDATE: does not block inserts whose foreign keys point at the row.
    lock_tree: Some("SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE"),
    run_usage:
        "(SELECT json_build_array(COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), \
                    COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), \
                    COUNT(*) - COALESCE(SUM(cache_hit), 0), COALESCE(SUM(cost_usd), 0), \
                    COALESCE(SUM(cache_write_tokens), 0), COALESCE(SUM(cache_saved_usd), 0), \
                    COALESCE(SUM(cache_hit), 0))::text \
                 FROM llm_calls c WHERE c.run_id = r.id)",
};
