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
