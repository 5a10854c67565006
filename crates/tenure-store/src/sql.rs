//! SQL plumbing shared by the store's modules: chunked multi-row INSERTs,
//! placeholder lists and the conversions between domain values and columns
//! (timestamps as unix microseconds, dates as `YYYY-MM-DD`).
//!
//! Every value is bound; only placeholders and fixed SQL text are ever
//! formatted into a statement. This module knows nothing of tables.

use crate::store::Dialect;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe};

/// A query whose values are still to be bound.
pub(crate) type AnyQuery = Query<'static, Any, AnyArguments>;

/// How many values one statement may bind on a dialect (SQLite's default
/// `SQLITE_MAX_VARIABLE_NUMBER` is 32766, PostgreSQL's protocol allows 65535).
pub(crate) fn max_params(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 32_766,
        Dialect::Postgres => 65_535,
    }
}

/// Rows per multi-row statement: as many as fit under the bind limit, at most
/// `MAX_ROWS` (bigger statements stop paying off and cost memory).
fn rows_per_statement(dialect: Dialect, cols: usize) -> usize {
    const MAX_ROWS: usize = 4_000;
    (max_params(dialect) / cols.max(1)).clamp(1, MAX_ROWS)
}

/// `n` placeholders separated by commas, numbered from `first` where the dialect numbers them.
pub(crate) fn placeholders(dialect: Dialect, n: usize, first: usize) -> String {
    let mut sql = String::new();
    push_tuples(&mut sql, dialect, 1, n, first);
    // One tuple "(…)": the caller writes its own parentheses.
    sql.trim_start_matches('(').trim_end_matches(')').to_owned()
}

/// Appends `rows` tuples of `cols` placeholders, numbered from `first`.
/// On SQLite the statement must hold no numbered placeholder before them:
/// sqlx binds SQLite's anonymous `?` from the first value whatever comes
/// before (use [`placeholder_list`] and [`in_order`] for such statements).
///
/// SQLite gets anonymous `?` placeholders: it looks `$N` names up linearly, so
/// a statement with thousands of numbered placeholders costs quadratic time.
/// The values are bound in order, so the two forms mean the same.
fn push_tuples(sql: &mut String, dialect: Dialect, rows: usize, cols: usize, first: usize) {
    use std::fmt::Write as _;
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            match dialect {
                Dialect::Sqlite => sql.push('?'),
                Dialect::Postgres => {
                    // Writing to a String cannot fail.
                    let _ = write!(sql, "${n}");
                }
            }
            n += 1;
        }
        sql.push(')');
    }
}

/// `sql`, whose placeholders are `$1, $2, …` in the order they appear, as
/// SQLite reads it fastest: anonymous `?` (see [`push_tuples`]). Unchanged
/// for PostgreSQL, or if the numbers are not in order.
pub(crate) fn in_order(dialect: Dialect, sql: String) -> String {
    if dialect != Dialect::Sqlite {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut rest = sql.as_str();
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || after[..digits].parse::<usize>().ok() != Some(expected) {
            return sql;
        }
        out.push('?');
        expected += 1;
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A `$first, $first+1, …` list of `n` placeholders (for short IN lists).
pub(crate) fn placeholder_list(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `head VALUES (…),(…) tail` over `items` in chunks that stay under the
/// bind-parameter limit; `bind` binds one item's `cols` values in order.
/// `head` and `tail` must hold no placeholders of their own (SQLite numbers
/// anonymous `?` from 1 whatever else the statement holds). Works for any
/// statement with a `VALUES` list: a multi-row INSERT, or a row-value
/// `IN (VALUES …)`. Returns the rows affected.
pub(crate) async fn values_chunks<T>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    head: &str,
    cols: usize,
    tail: &str,
    items: &[T],
    bind: impl Fn(AnyQuery, &T) -> AnyQuery,
) -> Result<u64, sqlx::Error> {
    let per = rows_per_statement(dialect, cols);
    let mut affected = 0;
    for chunk in items.chunks(per) {
        let mut sql = String::with_capacity(head.len() + tail.len() + chunk.len() * cols * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        push_tuples(&mut sql, dialect, chunk.len(), cols, 1);
        sql.push_str(tail);
        let mut q: AnyQuery = sqlx::query(AssertSqlSafe(sql));
        for item in chunk {
            q = bind(q, item);
        }
        affected += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(affected)
}

/// Why [`par_map`] failed.
#[derive(Debug)]
pub(crate) enum ParError<E> {
    /// `f` failed on the item at this index.
    Failed(usize, E),
    /// A worker thread panicked.
    Panicked,
}

/// Below this many items [`par_map`] stays on the calling thread.
const PAR_THRESHOLD: usize = 20_000;

/// `items.iter().map(f)`, in order, on several threads when there are many
/// items (CPU-bound encoding of big plans). Blocks the calling thread until
/// done, as the same work done inline would.
pub(crate) fn par_map<T, U, E, F>(items: &[T], f: F) -> Result<Vec<U>, ParError<E>>
where
    T: Sync,
    U: Send,
    E: Send,
    F: Fn(&T) -> Result<U, E> + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(8);
    if items.len() < PAR_THRESHOLD || threads < 2 {
        return items
            .iter()
            .enumerate()
            .map(|(i, t)| f(t).map_err(|e| ParError::Failed(i, e)))
            .collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .enumerate()
            .map(|(n, chunk)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, t)| f(t).map_err(|e| ParError::Failed(n * per + i, e)))
                        .collect::<Result<Vec<U>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().map_err(|_| ParError::Panicked)??);
        }
        Ok(out)
    })
}

/// A timestamp as stored: unix microseconds.
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A stored timestamp, if in chrono's range.
pub(crate) fn from_micros(v: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(v)
}

/// A date as stored.
pub(crate) fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// A stored date.
pub(crate) fn parse_date(s: &str) -> Result<NaiveDate, chrono::ParseError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
}

/// A duration in microseconds, saturating.
pub(crate) fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A `u64` count or position as a bound integer, saturating.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored non-negative integer.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples() {
        let mut s = String::new();
        push_tuples(&mut s, Dialect::Postgres, 2, 3, 2);
        assert_eq!(s, "($2,$3,$4),($5,$6,$7)");
        let mut s = String::new();
        push_tuples(&mut s, Dialect::Sqlite, 2, 2, 1);
        assert_eq!(s, "(?,?),(?,?)");
        assert_eq!(placeholder_list(3, 3), "$3, $4, $5");
    }

    #[test]
    fn numbered_placeholders_become_anonymous_on_sqlite_only_in_order() {
        let sql = "UPDATE t SET a = $1 WHERE b = $2 AND c IN ($3, $4, $10)".to_owned();
        // Out of order ($10 after $4): left as it is.
        assert_eq!(in_order(Dialect::Sqlite, sql.clone()), sql);
        let sql = format!(
            "UPDATE t SET a = $1 WHERE c IN ({})",
            placeholder_list(2, 11)
        );
        assert_eq!(
            in_order(Dialect::Sqlite, sql.clone()),
            "UPDATE t SET a = ? WHERE c IN (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(in_order(Dialect::Postgres, sql.clone()), sql);
        assert_eq!(in_order(Dialect::Sqlite, "SELECT 1".into()), "SELECT 1");
    }

    #[test]
    fn chunk_sizes_stay_under_limits() {
        for cols in [1, 9, 10, 12, 40_000] {
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                let per = rows_per_statement(d, cols);
                assert!(per >= 1);
                assert!(per * cols <= max_params(d) || per == 1);
            }
        }
    }

    #[test]
    fn par_map_keeps_order_and_reports_the_failing_index() {
        let items: Vec<u32> = (0..50_000).collect();
        let doubled = par_map(&items, |x| Ok::<_, ()>(x * 2));
        assert_eq!(doubled.ok(), Some(items.iter().map(|x| x * 2).collect()));
        let failed = par_map(&items, |x| if *x == 43_210 { Err("bad") } else { Ok(*x) });
        assert!(matches!(failed, Err(ParError::Failed(43_210, "bad"))));
        let small = par_map(&items[..3], |x| Ok::<_, ()>(*x));
        assert_eq!(small.ok(), Some(vec![0, 1, 2]));
    }

    #[test]
    fn dates_and_times_round_trip() {
        let d = NaiveDate::from_ymd_opt(2026, 1, 9).unwrap_or_default();
        assert_eq!(date_text(d), "2026-01-09");
        assert_eq!(parse_date("2026-01-09").ok(), Some(d));
        let t = from_micros(1_700_000_000_123_456);
        assert_eq!(t.map(micros), Some(1_700_000_000_123_456));
    }
}
