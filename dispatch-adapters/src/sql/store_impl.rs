//! The SQL store logic, written once and instantiated for SQLite and PostgreSQL, one file per
//! aggregate (`workspace_impl.rs`, `issue_impl.rs`, `error_link_impl.rs`, `run_impl.rs`,
//! `fix_impl.rs`, `customer_impl.rs`, `setting_impl.rs`, `delivery_impl.rs`, `pr_link_impl.rs`,
//! `agent_impl.rs`) on top of what several of them use (`shared_impl.rs`). Search is dialect
//! specific and lives in `sqlite.rs` / `postgres.rs`.
//!
//! Every write is one transaction from `write_tx()` (SQLite: `BEGIN IMMEDIATE` on the single
//! writer connection; PostgreSQL: a pooled transaction with row locks `FOR UPDATE` and advisory
//! locks where a decision spans rows). Rows are read, changed in Rust with the core's pure
//! functions — the same ones the in-memory store uses — and written back, columns and JSON
//! document together.
//!
//! A store type using this macro provides: `reader()`, `autocommit()`, `write_tx()`,
//! `ingest_queue()`, `ts()`, `ts_opt()`, `get_ts()`, `get_ts_opt()`, `lock_key()`, `lock_keys()`
//! and `lock_spawns()`; the macro arguments give the row-locking clauses (empty for SQLite, whose
//! writer lock already serialises writes).

macro_rules! impl_sql_store {
    ($S:ident, $DB:ty, for_update = $FU:literal, skip_locked = $SKIP:literal) => {
        impl_sql_store_shared!($S, $DB, for_update = $FU);
        impl_sql_workspace_store!($S);
        impl_sql_issue_store!($S);
        impl_sql_error_link_store!($S, $DB);
        impl_sql_run_store!($S, for_update = $FU, skip_locked = $SKIP);
        impl_sql_fix_store!($S, for_update = $FU);
        impl_sql_customer_store!($S, for_update = $FU);
        impl_sql_setting_store!($S);
        impl_sql_delivery_store!($S);
        impl_sql_pr_link_store!($S, for_update = $FU);
        impl_sql_agent_store!($S, for_update = $FU);
    };
}
