use slices::store::{migrations, Db, StoreError};

#[test]
fn migrations_apply_to_an_empty_database_then_are_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let latest = migrations().unwrap().last().unwrap().0;
    let db = Db::open(&path, 2).unwrap();
    assert_eq!(db.ping().unwrap(), latest);
    db.write(|tx| {
        tx.execute(
            "INSERT INTO users (username, email, display_name, password_hash, role, created_at, password_changed_at)
             VALUES ('kept', 'k@example.edu', 'K', 'x', 'student', 0, 0)",
            [],
        )?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    drop(db);
    let db = Db::open(&path, 2).unwrap();
    assert_eq!(db.ping().unwrap(), latest);
    let n: i64 = db
        .read(|c| Ok::<_, StoreError>(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 1, "re-opening kept the data");
    let mode: String = db
        .read(|c| Ok::<_, StoreError>(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = db
        .read(|c| Ok::<_, StoreError>(c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(fk, 1);
}

#[test]
fn a_newer_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Db::open(&path, 1).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
    }
    let err = Db::open(&path, 1).err().expect("refused");
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 999);
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("s.db"), 1).unwrap();
    let r: Result<(), StoreError> = db.write(|tx| {
        tx.execute("INSERT INTO audit (at, event) VALUES (1, 'half')", [])?;
        tx.execute("INSERT INTO nowhere VALUES (1)", [])?;
        Ok(())
    });
    assert!(r.is_err());
    let n: i64 = db
        .read(|c| Ok::<_, StoreError>(c.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 0);
}

/// A statement kept prepared is planned once: binding its parameters again, whatever they
/// are (a `LIMIT ?`, a term beside a partial index's), does not make SQLite plan it anew at
/// the next run, on the writer or a reader.
#[test]
fn kept_statements_are_not_planned_again_at_each_run() {
    use rusqlite::StatementStatus::RePrepare;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("s.db"), 1).unwrap();
    let statements = [
        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ?1 ORDER BY run_after, id LIMIT ?2",
        "SELECT id FROM slices WHERE course = ?1 AND expires_at < ?2 LIMIT ?2",
        "SELECT id FROM slices WHERE node_id = ?1 AND ip = ?2",
    ];
    let runs = |c: &rusqlite::Connection| -> rusqlite::Result<Vec<i32>> {
        let mut counts = Vec::new();
        for sql in statements {
            for i in 0..5 {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.parameter_count();
                let args: Vec<i64> = (1..=n as i64).map(|k| k * 10 + i).collect();
                stmt.query(rusqlite::params_from_iter(args))?.next()?;
            }
            counts.push(c.prepare_cached(sql)?.get_status(RePrepare));
        }
        Ok(counts)
    };
    let read = db.read(|c| Ok::<_, StoreError>(runs(c)?)).unwrap();
    let written = db.write(|c| Ok::<_, StoreError>(runs(c)?)).unwrap();
    assert_eq!(read, vec![0, 0, 0], "{statements:?}");
    assert_eq!(written, vec![0, 0, 0], "{statements:?}");
}
