//! Online backup and restore of the SQLite store through SQLite's backup API
//! (`sqlite3_backup_*`): a backup is a consistent copy of the database as of one moment, taken
//! while the server keeps writing; a restore replaces the live database's pages under SQLite's
//! own locking, so connections that stay open (a running server) see the restored data and no
//! half-copied state. `dispatch backup FILE` / `dispatch restore FILE` call these.

use crate::sql::db;
use dispatch_core::{Error, Result};
use libsqlite3_sys as ffi;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// What a backup or a restore copied, read back from the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The newest schema migration in the copy.
    pub schema_version: i64,
    pub issues: i64,
    pub runs: i64,
    pub bytes: u64,
}

/// Pages copied per step; between steps other connections may write (the backup then restarts
/// from the first page, as SQLite documents, so the copy is still one consistent snapshot).
const PAGES_PER_STEP: i32 = 1024;

fn options(path: &str) -> Result<SqliteConnectOptions> {
    crate::sqlite::configure_sqlite_library();
    let url = if path.starts_with("sqlite:") {
        path.to_string()
    } else {
        format!("sqlite://{path}")
    };
    Ok(SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::invalid("path", "not a SQLite path").with_source(e))?
        .busy_timeout(Duration::from_secs(30)))
}

/// Copies the live database at `db_path` into the new file `dest` (which must not exist).
pub async fn backup(db_path: &str, dest: &Path) -> Result<BackupReport> {
    if dest.exists() {
        return Err(Error::conflict(format!(
            "{} exists already; choose a new file for the backup",
            dest.display()
        )));
    }
    let mut src = options(db_path)?
        .read_only(true)
        .connect()
        .await
        .map_err(|e| {
            Error::unavailable(format!("cannot open the database {db_path}")).with_source(e)
        })?;
    let mut dst = options(&dest.to_string_lossy())?
        .create_if_missing(true)
        .connect()
        .await
        .map_err(|e| {
            Error::unavailable(format!("cannot create {}", dest.display())).with_source(e)
        })?;
    copy_pages(&mut src, &mut dst).await?;
    src.close().await.map_err(db("close source"))?;
    let report = inspect(&mut dst, dest).await;
    let _ = dst.close().await;
    report
}

/// Replaces the database at `db_path` with the backup at `backup_path`, after checking that the
/// backup is whole and not from a newer Dispatch (`known_versions`: the migrations this build
/// has). The database's journal mode (WAL) is kept.
pub async fn restore(
    backup_path: &Path,
    db_path: &str,
    known_versions: i64,
) -> Result<BackupReport> {
    if !backup_path.is_file() {
        return Err(Error::not_found(format!(
            "no backup at {}",
            backup_path.display()
        )));
    }
    let mut src = options(&backup_path.to_string_lossy())?
        .read_only(true)
        .connect()
        .await
        .map_err(|e| {
            Error::invalid(
                "backup",
                format!("{} is not a SQLite database", backup_path.display()),
            )
            .with_source(e)
        })?;
    let checked = inspect(&mut src, backup_path).await?;
    if checked.schema_version > known_versions {
        return Err(Error::invalid(
            "backup",
            format!(
                "the backup has schema version {}, this build knows up to {known_versions}: restore it with a newer Dispatch",
                checked.schema_version
            ),
        ));
    }
    let mut dst = options(db_path)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(|e| {
            Error::unavailable(format!("cannot open the database {db_path}")).with_source(e)
        })?;
    copy_pages(&mut src, &mut dst).await?;
    let _ = src.close().await;
    let report = inspect(&mut dst, Path::new(db_path)).await;
    let _ = dst.close().await;
    report
}

/// Integrity check and counts of a database (a fresh backup, or one about to be restored).
async fn inspect(conn: &mut SqliteConnection, path: &Path) -> Result<BackupReport> {
    let bad = |what: &str| {
        Error::invalid(
            "backup",
            format!(
                "{} is not a whole Dispatch database: {what}",
                path.display()
            ),
        )
    };
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| bad("it cannot be read").with_source(e))?;
    if integrity != "ok" {
        return Err(bad(&format!("integrity check says {integrity:?}")));
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM dispatch_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| bad("it has no Dispatch schema").with_source(e))?;
    let count = |table: &'static str| {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
    };
    let issues = count("dispatch_issue")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| bad("it has no issue table").with_source(e))?;
    let runs = count("dispatch_run")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| bad("it has no run table").with_source(e))?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        schema_version,
        issues,
        runs,
        bytes,
    })
}

/// `sqlite3_backup_init/step/finish` from `src`'s main database into `dst`'s.
async fn copy_pages(src: &mut SqliteConnection, dst: &mut SqliteConnection) -> Result<()> {
    let mut src = src.lock_handle().await.map_err(db("lock source"))?;
    let mut dst = dst.lock_handle().await.map_err(db("lock destination"))?;
    let (s, d) = (src.as_raw_handle().as_ptr(), dst.as_raw_handle().as_ptr());
    let failed = |handle: *mut ffi::sqlite3, rc: i32| {
        // SAFETY: `handle` is an open connection we hold locked; sqlite3_errmsg returns a
        // NUL-terminated string owned by it, copied out at once.
        let msg = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(handle)) }
            .to_string_lossy()
            .into_owned();
        Error::unavailable(format!("SQLite backup failed ({rc}): {msg}"))
    };
    // SAFETY: both connections are open and locked out of sqlx's worker threads for this scope
    // (`lock_handle`), the database names are NUL-terminated literals, and the backup object is
    // finished before the locks are released. The loop blocks this thread between steps only
    // when another connection holds a lock (a one-shot command, not a server path).
    unsafe {
        let backup = ffi::sqlite3_backup_init(d, c"main".as_ptr(), s, c"main".as_ptr());
        if backup.is_null() {
            return Err(failed(d, ffi::sqlite3_errcode(d)));
        }
        loop {
            match ffi::sqlite3_backup_step(backup, PAGES_PER_STEP) {
                ffi::SQLITE_DONE => break,
                ffi::SQLITE_OK => {}
                ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                rc => {
                    ffi::sqlite3_backup_finish(backup);
                    return Err(failed(d, rc));
                }
            }
        }
        let rc = ffi::sqlite3_backup_finish(backup);
        if rc != ffi::SQLITE_OK {
            return Err(failed(d, rc));
        }
    }
    Ok(())
}
