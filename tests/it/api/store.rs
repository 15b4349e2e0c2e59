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

/// Which reader connection `try_read_now` ran on, on the calling thread.
/// (The pool opens connections beyond its first in the background: this waits for one.)
fn reader_on_this_thread(db: &Db) -> usize {
    let began = std::time::Instant::now();
    loop {
        let on = |c: &rusqlite::Connection| Ok::<_, StoreError>(c as *const _ as usize);
        match db.try_read_now(on) {
            Ok(at) => return at.unwrap(),
            Err(_) if began.elapsed().as_secs() < 5 => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(_) => panic!("no reader came free in 5 s"),
        }
    }
}

/// A thread that reads now and then on its own (a web thread) keeps its reader and finds it
/// again, so no two threads pass a connection, and the memory its statements allocate, back
/// and forth; another thread is given another.
#[test]
fn a_thread_that_reads_on_its_own_keeps_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Db::open(&dir.path().join("s.db"), 8).unwrap());
    let mine = reader_on_this_thread(&db);
    assert_eq!(db.readers_in_use(), 1, "kept by this thread");
    for _ in 0..3 {
        assert_eq!(reader_on_this_thread(&db), mine);
    }
    assert_eq!(db.readers_in_use(), 1);
    let other = std::thread::spawn({
        let db = db.clone();
        move || reader_on_this_thread(&db)
    })
    .join()
    .unwrap();
    assert_ne!(
        mine, other,
        "another thread does not get this thread's reader"
    );
    assert_eq!(
        db.readers_in_use(),
        1,
        "the other thread's went back when it ended"
    );
    // Another database read on this thread: its reader is kept instead.
    let other_db = Db::open(&dir.path().join("t.db"), 8).unwrap();
    reader_on_this_thread(&other_db);
    assert_eq!(other_db.readers_in_use(), 1);
    assert_eq!(db.readers_in_use(), 0, "the first database's went back");
}

/// Threads keep readers only while enough stay free for the others: with three readers none
/// is kept, and however many threads read, the blocking pool's reads still get one at once.
#[test]
fn threads_do_not_keep_the_readers_the_others_need() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Db::open(&dir.path().join("s.db"), 3).unwrap());
    reader_on_this_thread(&db);
    std::thread::spawn({
        let db = db.clone();
        move || reader_on_this_thread(&db)
    })
    .join()
    .unwrap();
    assert_eq!(db.readers_in_use(), 0, "both readers went back to the pool");

    let db = std::sync::Arc::new(Db::open(&dir.path().join("t.db"), 5).unwrap());
    // Twenty threads, all alive at once, each reading on its own.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(21));
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let (db, barrier) = (db.clone(), barrier.clone());
            std::thread::spawn(move || {
                reader_on_this_thread(&db);
                barrier.wait(); // all have read
                barrier.wait(); // the test has read too
            })
        })
        .collect();
    barrier.wait();
    assert_eq!(
        db.readers_in_use(),
        2,
        "two kept, three left for the others"
    );
    let began = std::time::Instant::now();
    for _ in 0..3 {
        let n: i64 = db
            .read(|c| Ok::<_, StoreError>(c.query_row("SELECT 1", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(n, 1);
    }
    assert!(
        began.elapsed() < std::time::Duration::from_secs(5),
        "a blocking read waited for a reader: {:?}",
        began.elapsed()
    );
    barrier.wait();
    for t in threads {
        t.join().unwrap();
    }
}
