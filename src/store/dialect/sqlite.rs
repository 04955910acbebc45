//! SQLite: one node, one writer at a time (`BEGIN IMMEDIATE` takes the write lock up front,
//! so a transaction never fails half-way on a snapshot another writer made stale).

use super::Dialect;

pub(in crate::store) const SQLITE: Dialect = Dialect {
    name: "sqlite",
    begin_write: "BEGIN IMMEDIATE",
    serialize_claims: None,
    skip_locked: "",
    lock_tree: None,
    run_usage:
        "(SELECT json_array(TOTAL(input_tokens), TOTAL(output_tokens), TOTAL(cached_tokens), \
                    TOTAL(reasoning_tokens), COUNT(*) - TOTAL(cache_hit), TOTAL(cost_usd), \
                    TOTAL(cache_write_tokens), TOTAL(cache_saved_usd), TOTAL(cache_hit)) \
                 FROM llm_calls c WHERE c.run_id = r.id)",
};
