//! Reads answered on the calling thread, for the SQLite store's hottest read (the ranked search).
//!
//! sqlx runs every SQLite connection on a thread of its own: a query is a command sent to that
//! thread and rows sent back, each hand-off a futex wake-up and a context switch (9–14 per MCP
//! search under load, ~50 % of the server's CPU on the two threads' side of it). Here the query
//! runs where the caller is, on a read-only connection of SQLite's C API kept in a small pool,
//! with its statement compiled once per connection.
//!
//! A read must not hold a runtime thread for long, and how long a search takes depends on how
//! many issues match. So every inline read has a budget of SQLite virtual-machine steps
//! ([`INLINE_STEP_BUDGET`]), counted by SQLite's progress handler: a read that passes it is
//! interrupted and the caller answers it through sqlx's reader threads instead
//! ([`Inline::Declined`]). The work lost is at most the budget. Steps, not time: the same read
//! takes the same path on a slow or busy machine (and under a profiler), and tests can cross the
//! line on purpose. A read that fails here for any other reason (the database busy, a schema
//! being changed, an I/O error) is declined too and its connection closed: the pool answers it,
//! with the pool's waiting, and with the pool's error if the failure is real. A runtime thread
//! never waits for a lock here (no busy timeout).
//!
//! Only file databases have inline readers (an in-memory database exists per connection).

use crate::sql::decode_err;
use dispatch_core::{Error, Result};
use libsqlite3_sys as ffi;
use std::cell::Cell;
use std::ffi::{CStr, CString, c_int, c_void};
use std::ptr::{self, NonNull};
use std::sync::Mutex;

/// Virtual-machine steps between two calls of the progress handler.
const STEPS_PER_CHECK: c_int = 1_000;
/// Virtual-machine steps one inline read may take before it is moved off the calling thread
/// (it stops at the first progress check past the budget, so within [`STEPS_PER_CHECK`] more;
/// FTS5's own inner statements count too). The ranked search takes about 30 per matching issue
/// (SQLite 3.51): 20,000 is some 650 matches, ~1.5 ms on a 2-core VM; a "checkout" search over
/// 1,000 issues (125 matches) takes ~4,300.
pub(crate) const INLINE_STEP_BUDGET: u32 = 20_000;
/// Idle connections kept (callers are runtime threads: a few at once).
const MAX_IDLE: usize = 4;

/// What an inline read gave.
#[derive(Debug)]
pub(crate) enum Inline<T> {
    Done(T),
    /// Not answered here: the read passed [`INLINE_STEP_BUDGET`] and was stopped, it failed
    /// (its connection is closed), or the reader is closed. The caller answers it through sqlx's
    /// pool.
    Declined,
}

/// A pool of read-only connections to one database file, used on the caller's thread.
pub(crate) struct InlineReader {
    path: CString,
    /// [`INLINE_STEP_BUDGET`] (tests set less).
    step_budget: u32,
    /// Idle connections; `None` once closed.
    idle: Mutex<Option<Vec<Conn>>>,
}

impl std::fmt::Debug for InlineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One row of the ranked search: the JSON document and its rank (lower is better).
#[derive(Debug)]
pub(crate) struct RankedDoc<T> {
    pub doc: T,
    pub rank: f64,
}

impl InlineReader {
    pub(crate) fn new(path: &std::path::Path) -> Result<Self> {
        let path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::invalid("DATABASE_URL", "the SQLite path contains a NUL byte"))?;
        Ok(InlineReader {
            path,
            step_budget: INLINE_STEP_BUDGET,
            idle: Mutex::new(Some(Vec::new())),
        })
    }

    /// Runs `sql` (compiled once per connection) with `binds`, decoding column 0 of each row as
    /// JSON of `T` and column 1 as a float.
    pub(crate) fn ranked_docs<T: serde::de::DeserializeOwned>(
        &self,
        sql: &'static CStr,
        binds: &[Bind<'_>],
        table: &'static str,
    ) -> Inline<Vec<RankedDoc<T>>> {
        let mut conn = match self.checkout() {
            Ok(Some(c)) => c,
            Ok(None) => return Inline::Declined,
            Err(e) => {
                tracing::debug!(error = %e, "inline read declined");
                return Inline::Declined;
            }
        };
        match conn.ranked_docs(sql, binds, table, self.step_budget) {
            Ok(out) => {
                self.give_back(conn);
                out
            }
            // The connection is closed, not reused; the pool answers (and fails the same way
            // if the failure is the database's).
            Err(e) => {
                tracing::debug!(error = %e, "inline read failed; the pool answers it");
                Inline::Declined
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn with_step_budget(mut self, steps: u32) -> Self {
        self.step_budget = steps;
        self
    }

    /// Closes the idle connections; reads after this are declined, and a connection in use
    /// is closed when its read ends.
    pub(crate) fn close(&self) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(idle);
    }

    fn checkout(&self) -> Result<Option<Conn>> {
        match self.idle.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            None => return Ok(None),
            Some(idle) => {
                if let Some(c) = idle.pop() {
                    return Ok(Some(c));
                }
            }
        }
        Conn::open(&self.path).map(Some)
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(idle) = idle.as_mut()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

/// A bound parameter (by position, from 1).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Blob(&'a [u8]),
    Int(i64),
    Null,
}

/// A connection and the statements compiled on it. Used by one thread at a time (`Send`, not
/// `Sync`): it is opened with `SQLITE_OPEN_NOMUTEX`.
struct Conn {
    db: *mut ffi::sqlite3,
    /// Compiled statements by their SQL.
    stmts: Vec<(&'static CStr, *mut ffi::sqlite3_stmt)>,
    /// Progress-handler calls left to the current read (read and counted down by the handler
    /// through the same pointer; allocated here, freed after the connection is closed).
    checks_left: NonNull<Cell<u32>>,
}

// SAFETY: the connection is opened in multi-thread mode (NOMUTEX): SQLite allows using it from
// any thread as long as no two threads use it at once, which `&mut self` on every use ensures.
unsafe impl Send for Conn {}

/// SQLite's progress handler: non-zero interrupts the statement.
unsafe extern "C" fn over_budget(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the counter of the connection the handler is set on, freed only after
    // that connection is closed.
    let left = unsafe { &*(arg as *const Cell<u32>) };
    match left.get() {
        0 => 1,
        n => {
            left.set(n - 1);
            0
        }
    }
}

impl Conn {
    fn open(path: &CStr) -> Result<Conn> {
        let mut db = ptr::null_mut();
        // SAFETY: `path` is NUL-terminated; `db` receives a handle (also on failure, to close).
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        let conn = Conn {
            db,
            stmts: Vec::new(),
            checks_left: NonNull::from(Box::leak(Box::new(Cell::new(0)))),
        };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error("open the database for inline reads"));
        }
        // SAFETY: `conn.db` is open and used by this thread only.
        if unsafe { crate::sqlite_rank::register(conn.db) }.is_err() {
            return Err(conn.error("register the search ranking"));
        }
        // SAFETY: `conn.db` is an open handle; the counter is freed only after it is closed.
        unsafe {
            ffi::sqlite3_progress_handler(
                conn.db,
                STEPS_PER_CHECK,
                Some(over_budget),
                conn.checks_left.as_ptr().cast(),
            );
        }
        Ok(conn)
    }

    fn set_checks(&self, step_budget: u32) {
        // SAFETY: the counter lives until `drop`; SQLite reads it only inside calls on this
        // connection, made by the thread that holds `&self`.
        unsafe { self.checks_left.as_ref() }
            .set(step_budget.div_ceil(STEPS_PER_CHECK.unsigned_abs()));
    }

    fn error(&self, what: &str) -> Error {
        // SAFETY: `sqlite3_errmsg` accepts any handle (also NULL) and returns a C string owned
        // by SQLite, copied at once.
        let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
            .to_string_lossy()
            .into_owned();
        Error::unavailable(format!("SQLite: cannot {what}")).with_source(std::io::Error::other(msg))
    }

    fn statement(&mut self, sql: &'static CStr) -> Result<*mut ffi::sqlite3_stmt> {
        if let Some((_, s)) = self.stmts.iter().find(|(q, _)| *q == sql) {
            return Ok(*s);
        }
        let mut stmt = ptr::null_mut();
        // SAFETY: open handle, NUL-terminated SQL; `stmt` receives the statement.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error("compile a read"));
        }
        self.stmts.push((sql, stmt));
        Ok(stmt)
    }

    fn ranked_docs<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &'static CStr,
        binds: &[Bind<'_>],
        table: &'static str,
        step_budget: u32,
    ) -> Result<Inline<Vec<RankedDoc<T>>>> {
        // The budget covers compiling too (the first compile on a connection reads the schema,
        // a program of its own that the progress handler counts).
        self.set_checks(step_budget);
        let stmt = match self.statement(sql) {
            Ok(s) => s,
            // SAFETY: an open handle.
            Err(_) if unsafe { ffi::sqlite3_errcode(self.db) } == ffi::SQLITE_INTERRUPT => {
                return Ok(Inline::Declined);
            }
            Err(e) => return Err(e),
        };
        let mut reset = Reset(stmt);
        // SAFETY: a live statement.
        let expected = unsafe { ffi::sqlite3_bind_parameter_count(stmt) };
        if usize::try_from(expected).ok() != Some(binds.len()) {
            return Err(Error::internal(format!(
                "an inline read binds {} parameters, its statement has {expected}",
                binds.len()
            )));
        }
        for (i, b) in binds.iter().enumerate() {
            let at = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            // SAFETY: `stmt` is a live statement; text and blobs are copied by SQLite
            // (SQLITE_TRANSIENT) before the call returns.
            let rc = unsafe {
                match *b {
                    Bind::Text(t) => ffi::sqlite3_bind_text64(
                        stmt,
                        at,
                        t.as_ptr().cast(),
                        t.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Bind::Blob(v) => ffi::sqlite3_bind_blob64(
                        stmt,
                        at,
                        v.as_ptr().cast(),
                        v.len() as u64,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Bind::Int(n) => ffi::sqlite3_bind_int64(stmt, at, n),
                    Bind::Null => ffi::sqlite3_bind_null(stmt, at),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error("bind a parameter"));
            }
        }
        // The statement's step count decides when the handler is first called: start it at 0.
        // SAFETY: a live statement.
        unsafe { ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_VM_STEP, 1) };
        self.set_checks(step_budget);
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: `stmt` is live and bound.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_ROW => {
                    // SAFETY: column 0 of the current row; the pointer is valid until the next
                    // step or reset, and the bytes are decoded before either.
                    let doc = unsafe {
                        let p = ffi::sqlite3_column_blob(stmt, 0);
                        let n = usize::try_from(ffi::sqlite3_column_bytes(stmt, 0)).unwrap_or(0);
                        if p.is_null() {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(p.cast::<u8>(), n)
                        }
                    };
                    let doc = match serde_json::from_slice(doc) {
                        Ok(d) => d,
                        Err(e) => break Err(decode_err(table, "doc", e)),
                    };
                    // SAFETY: column 1 of the current row.
                    let rank = unsafe { ffi::sqlite3_column_double(stmt, 1) };
                    out.push(RankedDoc { doc, rank });
                }
                ffi::SQLITE_DONE => break Ok(Inline::Done(std::mem::take(&mut out))),
                ffi::SQLITE_INTERRUPT => break Ok(Inline::Declined),
                _ => break Err(self.error("read")),
            }
        };
        reset.now();
        result
    }
}

/// Resets a statement (ending its read transaction) and clears its bindings when dropped.
struct Reset(*mut ffi::sqlite3_stmt);

impl Reset {
    fn now(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a live statement; reset and clear_bindings accept any state.
            unsafe {
                ffi::sqlite3_reset(self.0);
                ffi::sqlite3_clear_bindings(self.0);
            }
            self.0 = ptr::null_mut();
        }
    }
}

impl Drop for Reset {
    fn drop(&mut self) {
        self.now();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the statements belong to this handle and are finalized once, before the
        // handle is closed (`sqlite3_close` accepts NULL); the counter was leaked from a `Box`
        // in `open` and is freed once, after the handle, its only other user, is closed.
        unsafe {
            for (_, s) in self.stmts.drain(..) {
                ffi::sqlite3_finalize(s);
            }
            ffi::sqlite3_close(self.db);
            drop(Box::from_raw(self.checks_left.as_ptr()));
        }
    }
}
