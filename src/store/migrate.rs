//! Numbered migrations from `schema.sql`, embedded in the binary.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// The schema, as shipped in the repository.
pub const MIGRATIONS_SQL: &str = include_str!("../../schema.sql");

/// The migrations in order: `(version, sql)`. Versions are 1, 2, 3, ... with no gaps.
pub fn migrations() -> Result<Vec<(i64, String)>, StoreError> {
    let mut out: Vec<(i64, String)> = Vec::new();
    for line in MIGRATIONS_SQL.lines() {
        if let Some(rest) = line.trim().strip_prefix("-- version:") {
            let v: i64 = rest
                .trim()
                .parse()
                .map_err(|_| StoreError::Schema(format!("bad version line `{line}`")))?;
            let expected = out.len() as i64 + 1;
            if v != expected {
                return Err(StoreError::Schema(format!(
                    "version {v} found where {expected} was expected"
                )));
            }
            out.push((v, String::new()));
        } else if let Some((_, sql)) = out.last_mut() {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    Ok(out)
}

/// The version the database file is at.
pub fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies every migration newer than the database, each in its own transaction. A database
/// newer than the binary is refused and left untouched.
pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let all = migrations()?;
    let known = all.last().map(|(v, _)| *v).unwrap_or(0);
    let found = schema_version(conn)?;
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (version, sql) in all.into_iter().filter(|(v, _)| *v > found) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        tx.execute_batch(&sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
