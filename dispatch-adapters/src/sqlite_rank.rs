//! `dispatch_bm25(fts, size, w0, w1, …)`: FTS5's `bm25()`, with the row's size in tokens read
//! from the argument `size` instead of looked up by FTS5 itself.
//!
//! FTS5's `bm25()` asks for each matching row's length with a statement of its own on the
//! `%_docsize` table (bind, step, reset: some 3,000 SQLite instructions a row, 40 % of the
//! function's cost in a search that matches 125 issues). The ranked search already joins each
//! hit with its row; joining `%_docsize` there too is a b-tree seek inside the same statement,
//! and the blob it reads (`sz`, one varint per column, FTS5's own format) is what FTS5 would
//! have decoded. When it is NULL or not what FTS5 wrote, the function asks FTS5 as `bm25()`
//! does, so a missing row never changes a score.
//!
//! The arithmetic is FTS5's, operation for operation (SQLite 3.51, `fts5_aux.c`): on x86-64, as
//! built here, scores equal `bm25()`'s bit for bit, which the tests check on a corpus and a set
//! of query shapes. (Where the C compiler fuses a multiply and an add, as on aarch64 by default,
//! they may differ from `bm25()` in the last bit.) It is registered on every connection the
//! SQLite store opens ([`register`]).

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_int, c_void};
use std::ptr;

/// The SQL name of the function.
pub(crate) const NAME: &CStr = c"dispatch_bm25";

/// Registers [`NAME`] on the connection `db`. Fails with SQLite's error code when FTS5 is
/// missing or refuses the function.
///
/// # Safety
/// `db` is an open connection, not used by another thread during the call.
pub(crate) unsafe fn register(db: *mut ffi::sqlite3) -> Result<(), c_int> {
    // FTS5 hands out its API as a pointer value of type "fts5_api_ptr" (SQLite's documented way,
    // https://sqlite.org/fts5.html#extending_fts5).
    let mut api: *mut ffi::fts5_api = ptr::null_mut();
    let mut stmt = ptr::null_mut();
    // SAFETY: open handle (the caller's promise), NUL-terminated SQL; the statement is finalized
    // below on every path; the bound pointer outlives the statement.
    unsafe {
        let rc = ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK {
            ffi::sqlite3_finalize(stmt);
            return Err(rc);
        }
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&raw mut api).cast(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        let rc = ffi::sqlite3_finalize(stmt);
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
    }
    if api.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    // SAFETY: FTS5 filled `api` with its (static, per-connection) API object; version 2 and
    // later have `xCreateFunction` at this place.
    let rc = unsafe {
        match (*api).xCreateFunction {
            Some(create) if (*api).iVersion >= 2 => {
                create(api, NAME.as_ptr(), ptr::null_mut(), Some(bm25_sized), None)
            }
            _ => ffi::SQLITE_ERROR,
        }
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// What `bm25()` computes once per query (FTS5's `Fts5Bm25Data`).
struct QueryData {
    avgdl: f64,
    idf: Vec<f64>,
    /// Per-row scratch: each phrase's weighted frequency.
    freq: Vec<f64>,
}

unsafe extern "C" fn free_query_data(p: *mut c_void) {
    // SAFETY: `p` is the `Box<QueryData>` leaked in `query_data`; FTS5 calls this once.
    drop(unsafe { Box::from_raw(p.cast::<QueryData>()) });
}

/// Counts the rows a phrase matches (FTS5's `fts5CountCb`).
unsafe extern "C" fn count_row(
    _api: *const ffi::Fts5ExtensionApi,
    _fts: *mut ffi::Fts5Context,
    n: *mut c_void,
) -> c_int {
    // SAFETY: `n` is the `i64` passed to `xQueryPhrase` below, alive for the call.
    unsafe { *n.cast::<i64>() += 1 };
    ffi::SQLITE_OK
}

/// The query's `QueryData`, computed on the first row (FTS5's `fts5Bm25GetData`).
///
/// # Safety
/// `api`/`fts` are what FTS5 passed to the auxiliary function.
unsafe fn query_data<'a>(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
) -> Result<&'a mut QueryData, c_int> {
    let (Some(get), Some(set), Some(phrases), Some(rows), Some(total), Some(query_phrase)) = (
        api.xGetAuxdata,
        api.xSetAuxdata,
        api.xPhraseCount,
        api.xRowCount,
        api.xColumnTotalSize,
        api.xQueryPhrase,
    ) else {
        return Err(ffi::SQLITE_ERROR);
    };
    // SAFETY: FTS5's API on its own context; the auxdata, when set, is our `QueryData`, owned by
    // FTS5 until the query ends (after the last call of the function).
    unsafe {
        let p = get(fts, 0).cast::<QueryData>();
        if let Some(data) = p.as_mut() {
            return Ok(data);
        }
        let n_phrase = usize::try_from(phrases(fts)).unwrap_or(0);
        let (mut n_row, mut n_token) = (0i64, 0i64);
        check(rows(fts, &mut n_row))?;
        check(total(fts, -1, &mut n_token))?;
        let mut data = Box::new(QueryData {
            avgdl: n_token as f64 / n_row as f64,
            idf: Vec::with_capacity(n_phrase),
            freq: vec![0.0; n_phrase],
        });
        for i in 0..n_phrase {
            let mut n_hit = 0i64;
            check(query_phrase(
                fts,
                i as c_int,
                (&raw mut n_hit).cast(),
                Some(count_row),
            ))?;
            // FTS5: `log( (nRow - nHit + 0.5) / (nHit + 0.5) )`, at least 1e-6.
            let idf = (((n_row - n_hit) as f64 + 0.5) / (n_hit as f64 + 0.5)).ln();
            data.idf.push(if idf <= 0.0 { 1e-6 } else { idf });
        }
        let raw = Box::into_raw(data);
        check(set(fts, raw.cast(), Some(free_query_data)))?;
        Ok(&mut *raw)
    }
}

fn check(rc: c_int) -> Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The row's size in tokens from FTS5's `%_docsize.sz` blob (one SQLite varint per column):
/// `None` unless it holds exactly `columns` of them.
fn tokens_in(sz: &[u8], columns: usize) -> Option<i32> {
    let (mut at, mut sum) = (0usize, 0i32);
    for _ in 0..columns {
        let (v, used) = varint32(sz.get(at..)?)?;
        sum = sum.wrapping_add(v as i32);
        at += used;
    }
    (at == sz.len()).then_some(sum)
}

/// SQLite's varint (big-endian groups of 7 bits) as FTS5 reads a 32-bit one
/// (`sqlite3Fts5GetVarint32`: from 4 bytes on, the low 31 bits): its value and length, `None`
/// if it runs past the end.
fn varint32(b: &[u8]) -> Option<(u32, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(9) {
        let (value, len) = if i == 8 {
            (v << 8 | u64::from(byte), 9)
        } else {
            v = v << 7 | u64::from(byte & 0x7f);
            if byte & 0x80 != 0 {
                continue;
            }
            (v, i + 1)
        };
        let value = value as u32;
        return Some((if len > 3 { value & 0x7fff_ffff } else { value }, len));
    }
    None
}

/// The auxiliary function. Arguments after the table: the `%_docsize.sz` of the row, then the
/// column weights as `bm25()` takes them.
unsafe extern "C" fn bm25_sized(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 calls this with its API, the cursor's context and `n_val` argument values.
    match unsafe { score(&*api, fts, n_val, args) } {
        Ok(s) => unsafe { ffi::sqlite3_result_double(ctx, s) },
        Err(rc) => unsafe { ffi::sqlite3_result_error_code(ctx, rc) },
    }
}

/// FTS5's `fts5Bm25Function` with the row size from the first argument.
///
/// # Safety
/// As for [`bm25_sized`].
unsafe fn score(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    n_val: c_int,
    args: *mut *mut ffi::sqlite3_value,
) -> Result<f64, c_int> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let (Some(inst_count), Some(inst), Some(column_size), Some(column_count)) =
        (api.xInstCount, api.xInst, api.xColumnSize, api.xColumnCount)
    else {
        return Err(ffi::SQLITE_ERROR);
    };
    let args: &[*mut ffi::sqlite3_value] = match usize::try_from(n_val) {
        // SAFETY: SQLite passes `n_val` valid argument values.
        Ok(n) if n > 0 && !args.is_null() => unsafe { std::slice::from_raw_parts(args, n) },
        _ => &[],
    };
    // SAFETY: FTS5's API on its own context, arguments valid for the call.
    unsafe {
        let data = query_data(api, fts)?;
        data.freq.iter_mut().for_each(|f| *f = 0.0);
        let mut n_inst = 0;
        check(inst_count(fts, &mut n_inst))?;
        for i in 0..n_inst {
            let (mut ip, mut ic, mut io) = (0, 0, 0);
            check(inst(fts, i, &mut ip, &mut ic, &mut io))?;
            let w = match usize::try_from(ic).ok().and_then(|c| args.get(1 + c)) {
                Some(&v) => ffi::sqlite3_value_double(v),
                None => 1.0,
            };
            if let Some(f) = usize::try_from(ip).ok().and_then(|p| data.freq.get_mut(p)) {
                *f += w;
            }
        }
        let given = args.first().and_then(|&v| {
            let p = ffi::sqlite3_value_blob(v).cast::<u8>();
            let n = usize::try_from(ffi::sqlite3_value_bytes(v)).ok()?;
            if p.is_null() {
                return None;
            }
            let columns = usize::try_from(column_count(fts)).ok()?;
            tokens_in(std::slice::from_raw_parts(p, n), columns)
        });
        let tokens = match given {
            Some(t) => t,
            None => {
                let mut t = 0;
                check(column_size(fts, -1, &mut t))?;
                t
            }
        };
        let d = f64::from(tokens);
        let mut score = 0.0;
        for (idf, f) in data.idf.iter().zip(&data.freq) {
            score += idf * ((f * (K1 + 1.0)) / (f + K1 * (1.0 - B + B * d / data.avgdl)));
        }
        Ok(-score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection as _, Row as _};

    /// Every score, for every query shape, equals FTS5's `bm25()` bit for bit (x86-64, where
    /// the C compiler does not fuse multiply-adds by default): with the size
    /// from `%_docsize`, without it (NULL or a blob FTS5 did not write: asked of FTS5), with
    /// fewer weights than columns, on a table with deleted and updated rows.
    #[cfg(target_arch = "x86_64")]
    #[tokio::test]
    async fn scores_equal_fts5s_bm25_bit_for_bit() {
        let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        {
            let mut h = c.lock_handle().await.unwrap();
            // SAFETY: the locked handle is open and used by this thread only.
            unsafe { register(h.as_raw_handle().as_ptr()) }.unwrap();
        }
        sqlx::query("CREATE VIRTUAL TABLE t USING fts5(a, b, c, tokenize = 'unicode61')")
            .execute(&mut c)
            .await
            .unwrap();
        let words = [
            "checkout",
            "checkouts",
            "invoice",
            "login",
            "export",
            "timeout",
            "500",
            "tenant",
            "deploy",
            "null",
            "pointer",
            "retry",
            "queue",
            "naïve",
            "Überweisung",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for id in 1..=400i64 {
            let mut text = |max: u64| {
                (0..next(max + 1))
                    .map(|_| words[next(words.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let (a, b, cc) = (text(6), text(40), text(120));
            sqlx::query("INSERT INTO t (rowid, a, b, c) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(a)
                .bind(b)
                .bind(cc)
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::query("DELETE FROM t WHERE rowid % 7 = 0")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("UPDATE t SET c = c || ' retry retry queue' WHERE rowid % 5 = 0")
            .execute(&mut c)
            .await
            .unwrap();
        let queries = [
            "checkout",
            "\"checkout\"*",
            "check*",
            "checkout OR login OR \"500\"",
            "\"null pointer\"",
            "a : retry",
            "{b c} : queue AND deploy",
            "timeout NOT tenant",
            "\"inv\"* OR \"exp\"* OR \"ten\"*",
            "naïve OR überweisung",
        ];
        let sql = "SELECT t.rowid AS id, \
               bm25(t, 3.0, 2.0, 1.0) AS b3, dispatch_bm25(t, d.sz, 3.0, 2.0, 1.0) AS s3, \
               dispatch_bm25(t, NULL, 3.0, 2.0, 1.0) AS n3, dispatch_bm25(t, x'01', 3.0, 2.0, 1.0) AS x3, \
               bm25(t) AS b0, dispatch_bm25(t, d.sz) AS s0, \
               bm25(t, 2.0) AS b1, dispatch_bm25(t, d.sz, 2.0) AS s1 \
             FROM t LEFT JOIN t_docsize d ON d.id = t.rowid WHERE t MATCH ?";
        let mut compared = 0;
        for q in queries {
            let rows = sqlx::query(sql).bind(q).fetch_all(&mut c).await.unwrap();
            assert!(!rows.is_empty(), "{q} matches");
            let distinct: std::collections::BTreeSet<u64> = rows
                .iter()
                .map(|r| r.get::<f64, _>("b3").to_bits())
                .collect();
            assert!(distinct.len() > 1 || rows.len() == 1, "{q}: scores differ");
            for r in rows {
                let id: i64 = r.get("id");
                let bits = |col: &str| r.get::<f64, _>(col).to_bits();
                for col in ["s3", "n3", "x3"] {
                    assert_eq!(bits("b3"), bits(col), "{q}, row {id}, {col}");
                }
                assert_eq!(bits("b0"), bits("s0"), "{q}, row {id}, no weights");
                assert_eq!(bits("b1"), bits("s1"), "{q}, row {id}, one weight");
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared} rows compared");
    }

    #[test]
    fn varints_read_as_sqlite_writes_them() {
        assert_eq!(varint32(&[0x05]), Some((5, 1)));
        assert_eq!(varint32(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint32(&[0xff, 0x7f]), Some((16_383, 2)));
        assert_eq!(varint32(&[0x81, 0x80, 0x00]), Some((16_384, 3)));
        assert_eq!(varint32(&[0x81]), None);
        // From 4 bytes on, FTS5 keeps the low 31 bits.
        assert_eq!(varint32(&[0x8f, 0xff, 0xff, 0x7f]), Some((0x01ff_ffff, 4)));
        assert_eq!(
            varint32(&[0x88, 0x80, 0x80, 0x80, 0x00]),
            Some((0, 5)),
            "2^31 masked"
        );
        assert_eq!(varint32(&[]), None);
        assert_eq!(tokens_in(&[3, 0x81, 0x00, 0], 3), Some(131));
        assert_eq!(tokens_in(&[3, 4], 3), None, "a column short");
        assert_eq!(tokens_in(&[3, 4, 5, 6], 3), None, "bytes left over");
    }
}
