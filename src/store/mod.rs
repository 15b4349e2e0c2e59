//! The embedded SQLite store: one file, WAL, foreign keys on, a busy timeout, many readers
//! and exactly one writer. Blocking work is moved off the async threads by [`Db::run`].

mod migrate;

pub use migrate::{migrations, schema_version, MIGRATIONS_SQL};

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::hooks::Action;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error(
        "the database {path} is at schema version {found}, newer than this binary knows \
         (up to {known}); run a newer slices binary or restore a backup"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "{path} is not a Slices database ({why}): it is left as it is. Restore a backup there, \
         or move it away to start a new, empty master"
    )]
    NotADatabase { path: PathBuf, why: String },
    #[error("the embedded schema is malformed: {0}")]
    Schema(String),
    #[error("background task failed: {0}")]
    Join(String),
}

impl StoreError {
    /// The disk under the database is full, or cannot be written: nothing the user did is
    /// wrong, and nothing was half-saved (the transaction was rolled back).
    pub fn is_storage(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::CannotOpen
            ),
            _ => false,
        }
    }
}

type Manager = SqliteConnectionManager;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    readers: Pool<Manager>,
    writer: Pool<Manager>,
    id: u64,
    path: PathBuf,
    commits: Arc<AtomicU64>,
    /// Set by the writer connection's update hook when a transaction inserts a job row.
    job_inserted: Arc<AtomicBool>,
    /// Notified after each commit that queued a job: the job loop waits on it.
    jobs_queued: Arc<tokio::sync::Notify>,
    /// Set by the update hook when a transaction writes a slice, its events or a job.
    slice_touched: Arc<AtomicBool>,
    /// Counts the commits that wrote a slice, its events or a job: live pages wait on it.
    slices_changed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Why the last write failed for lack of storage (a full disk), until one succeeds.
    write_failure: Arc<std::sync::Mutex<Option<String>>>,
}

thread_local! {
    /// A reader connection kept by a thread that reads now and then on its own (a web
    /// thread), with the id of the database it is for.
    static OWN_READER: std::cell::RefCell<Option<(u64, PooledConnection<Manager>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Readers a thread does not keep for itself: they stay for the threads that read only now
/// and then, and for the blocking pool.
const READERS_LEFT_FOR_OTHERS: u32 = 3;

/// Gives each open database its own id.
static NEXT_DB_ID: AtomicU64 = AtomicU64::new(1);

fn read_in_transaction<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    // A reader left in a transaction (its work panicked) ends it first.
    if !conn.is_autocommit() {
        conn.prepare_cached("ROLLBACK")
            .and_then(|mut s| s.execute([]))
            .map_err(StoreError::from)?;
    }
    conn.prepare_cached("BEGIN")
        .and_then(|mut s| s.execute([]))
        .map_err(StoreError::from)?;
    let out = f(conn);
    // Nothing was written: ending the transaction only lets go of the snapshot.
    conn.prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .map_err(StoreError::from)?;
    out
}

fn configure(conn: &mut Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    // Every statement in records/ is prepared once per connection and kept (rusqlite keeps
    // 16 by default: a page's or a job's statements would push each other out).
    conn.set_prepared_statement_cache_capacity(256);
    // Plans never depend on bound values. Otherwise SQLite marks a statement whose plan
    // looked at a parameter (`LIMIT ?`, a term compared with a partial index's) and plans it
    // again every time a value is bound: the job loop's claim did so twice per pass (8 % of
    // the CPU of a loop retrying jobs for nodes that do not answer). Our statements write what
    // a plan must know (states, a partial index's own term) into their text.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = NORMAL;
         PRAGMA temp_store = MEMORY;",
    )?;
    if read_only {
        // Each reader keeps its own page cache, SQLite's default 2 MB: with eight readers that
        // was 16 MB of copies of the same hot pages, most of the master's memory at 100,000
        // slices. 512 KiB each holds what a page reads; the rest comes from the kernel's cache.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -512;")?;
    }
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database file and applies pending migrations. Only a
    /// missing file is a new database: an empty or foreign file, or one from a newer Slices,
    /// is refused before anything is written to it.
    pub fn open(path: &Path, readers: u32) -> Result<Db, StoreError> {
        refuse_unless_ours(path)?;
        {
            let mut conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            configure(&mut conn, false)?;
            migrate::apply(&mut conn, path)?;
        }
        let job_inserted = Arc::new(AtomicBool::new(false));
        let slice_touched = Arc::new(AtomicBool::new(false));
        let (flag, touched) = (job_inserted.clone(), slice_touched.clone());
        let writer = Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_secs(30))
            .build(Manager::file(path).with_init(move |c| {
                configure(c, false)?;
                // Whoever queues a job (a page, a command, another job) wakes the job loop
                // once the transaction commits, without knowing of it.
                let (flag, touched) = (flag.clone(), touched.clone());
                c.update_hook(Some(move |action, _: &str, table: &str, _| {
                    if action == Action::SQLITE_INSERT && table == "jobs" {
                        flag.store(true, Ordering::Relaxed);
                    }
                    if matches!(table, "slices" | "slice_events" | "jobs") {
                        touched.store(true, Ordering::Relaxed);
                    }
                }));
                Ok(())
            }))?;
        let readers = Pool::builder()
            .max_size(readers)
            .min_idle(Some(1))
            .build(Manager::file(path).with_init(|c| configure(c, true)))?;
        Ok(Db {
            readers,
            writer,
            id: NEXT_DB_ID.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
            commits: Default::default(),
            job_inserted,
            jobs_queued: Default::default(),
            slice_touched,
            slices_changed: Arc::new(tokio::sync::watch::Sender::new(0)),
            write_failure: Default::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection, in one read transaction: every statement sees the
    /// database at one moment, and the WAL read lock is taken once, not per statement.
    pub fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.readers.get().map_err(StoreError::from)?;
        read_in_transaction(&conn, f)
    }

    /// Reader connections in use now, those threads keep for themselves included.
    pub fn readers_in_use(&self) -> u32 {
        let state = self.readers.state();
        state.connections - state.idle_connections
    }

    /// [`Db::read`] on the calling thread if a reader connection is free right now, without
    /// waiting for one; `Err(f)` gives the work back when none is (the caller then takes it to
    /// the blocking pool). For short, bounded reads on the web's threads: an indexed lookup or
    /// a page of a list costs less than the hand-over to another thread.
    pub fn try_read_now<T, E, F>(&self, f: F) -> Result<Result<T, E>, F>
    where
        E: From<StoreError>,
        F: FnOnce(&Connection) -> Result<T, E>,
    {
        // The thread's own reader, when it keeps one for this database: a connection handed
        // from thread to thread had each thread free memory the other allocated (glibc then
        // locks the other thread's arena: a quarter of the dashboard's throughput under load,
        // docs/benchmarks.md), and its page cache stays warm with what this thread reads.
        let kept = OWN_READER.with(|r| {
            let mut r = r.borrow_mut();
            match r.take() {
                Some((id, conn)) if id == self.id => Some(conn),
                other => {
                    *r = other;
                    None
                }
            }
        });
        let Some(conn) = kept.or_else(|| self.readers.try_get()) else {
            return Err(f);
        };
        let out = read_in_transaction(&conn, f);
        // Kept only while enough stay for everyone else (the blocking pool's readers wait for
        // one): a machine with more web threads than readers shares the rest.
        if self
            .readers
            .max_size()
            .saturating_sub(self.readers_in_use())
            >= READERS_LEFT_FOR_OTHERS
        {
            // (One kept per thread: another database's, from a test before, gives way.)
            OWN_READER.with(|r| {
                let mut r = r.borrow_mut();
                if r.as_ref().is_none_or(|(id, _)| *id != self.id) {
                    *r = Some((self.id, conn));
                }
            });
        }
        Ok(out)
    }

    /// A short, bounded read from async code: on this thread when a reader connection is free
    /// ([`Db::try_read_now`]), else on the blocking pool.
    pub async fn read_now<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match self.try_read_now(f) {
            Ok(done) => done,
            Err(f) => self.run(move |db| db.read(f)).await,
        }
    }

    /// Runs `f` inside one IMMEDIATE transaction on the single writer connection and commits
    /// when it returns `Ok`; an `Err` rolls everything back, so nothing is half-written.
    pub fn write<T, E>(&self, f: impl FnOnce(&Transaction) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn: PooledConnection<Manager> = self.writer.get().map_err(StoreError::from)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.noted(e.into()))?;
        self.job_inserted.store(false, Ordering::Relaxed);
        self.slice_touched.store(false, Ordering::Relaxed);
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.noted(e.into()))?;
        self.set_write_failure(None);
        self.commits.fetch_add(1, Ordering::Relaxed);
        if self.job_inserted.swap(false, Ordering::Relaxed) {
            self.jobs_queued.notify_one();
        }
        if self.slice_touched.swap(false, Ordering::Relaxed) {
            self.slices_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(out)
    }

    /// A write's error, remembered if it is for lack of storage.
    fn noted(&self, e: StoreError) -> StoreError {
        if e.is_storage() {
            self.set_write_failure(Some(e.to_string()));
        }
        e
    }

    fn set_write_failure(&self, failure: Option<String>) {
        let mut slot = self.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() || failure.is_some() {
            if slot.is_some() && failure.is_none() {
                tracing::info!("the database can be written again");
            }
            *slot = failure;
        }
    }

    /// Why the store cannot write, if its last write failed for lack of storage (a full
    /// disk) and none succeeded since.
    pub fn write_failure(&self) -> Option<String> {
        self.write_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes the probe row: whether the store can write right now (clears a remembered
    /// failure when it can).
    pub fn probe_write(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO store_probe (id, at) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                [now()],
            )?;
            Ok(())
        })
    }

    /// How many write transactions this handle (and its clones) committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Notified after every commit that queued a job (a permit is kept when nobody waits).
    pub fn jobs_queued(&self) -> Arc<tokio::sync::Notify> {
        self.jobs_queued.clone()
    }

    /// Changes after every commit that wrote a slice, its events or a job (what a slice's
    /// card shows): a live page waits on it instead of asking again and again.
    pub fn slice_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.slices_changed.subscribe()
    }

    /// Runs blocking database work on the blocking thread pool, off the async threads.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Db) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| E::from(StoreError::Join(e.to_string())))?
    }

    /// A cheap query that proves the database answers.
    pub fn ping(&self) -> Result<i64, StoreError> {
        self.read(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }
}

pub use crate::clock::now;

/// Copies the database at `db` to the new file `to` while others may go on writing: its own
/// read-only connection and one read transaction (`VACUUM INTO`), so the copy is the database
/// at one moment.
pub fn backup(db: &Path, to: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Made first, empty and readable by its owner only (it holds password hashes and
    // tokens); never over an existing file.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| StoreError::Join(format!("cannot create {}: {e}", to.display())))?;
    if let Err(e) = conn.execute("VACUUM INTO ?1", [to.to_string_lossy()]) {
        let _ = std::fs::remove_file(to);
        return Err(e.into());
    }
    Ok(())
}

/// A file at `path` must be an SQLite database this binary can migrate: not empty, SQLite's
/// header, a schema version no newer than ours. Read without writing (no journal change).
fn refuse_unless_ours(path: &Path) -> Result<(), StoreError> {
    use std::io::Read;
    let not_ours = |why: String| StoreError::NotADatabase {
        path: path.to_path_buf(),
        why,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // new
        Err(e) => return Err(not_ours(format!("it cannot be read: {e}"))),
    };
    let mut header = [0u8; 16];
    let n = file
        .read(&mut header)
        .map_err(|e| not_ours(e.to_string()))?;
    if n == 0 {
        return Err(not_ours("the file is empty".into()));
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(not_ours("the file is not an SQLite database".into()));
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let found = schema_version(&conn)?;
    let known = migrations()?.last().map(|(v, _)| *v).unwrap_or(0);
    if found == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(not_ours(
                "it is an SQLite database of something else: it has tables, and no Slices version"
                    .into(),
            ));
        }
    }
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    Ok(())
}
