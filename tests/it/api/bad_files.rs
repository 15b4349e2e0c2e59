//! Bad files in the data folder, through the real `slices serve`: only a missing database is a
//! new install; an empty, foreign or newer one is refused with a clear message and left byte
//! for byte as it was; the folder's lock is taken before the database is opened.

use std::path::Path;
use std::process::Command;

/// `slices serve` on `data`: its exit status and what it said (it must not keep running).
fn serve(data: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slices"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env_remove("SLICES_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > 20 {
            let _ = child.kill();
            panic!("slices serve took the data folder and ran");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The data folder's files, name -> bytes (the lock file aside).
fn files(data: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "master.lock")
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    all.sort();
    all
}

fn refused_untouched(data: &Path, said: &str) {
    let before = files(data);
    let (ok, out) = serve(data);
    assert!(!ok, "refused: {out}");
    assert!(out.contains(said), "says `{said}`: {out}");
    assert!(!out.contains("/setup/"), "no new admin link: {out}");
    assert_eq!(files(data), before, "left byte for byte as it was");
}

#[test]
fn an_empty_database_file_is_refused_not_taken_for_a_new_install() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("slices.db"), b"").unwrap();
    refused_untouched(&data, "the file is empty");
}

#[test]
fn a_file_that_is_not_sqlite_or_not_ours_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("slices.db"), b"users:\n  - admin\n").unwrap();
    refused_untouched(&data, "not an SQLite database");

    std::fs::remove_file(data.join("slices.db")).unwrap();
    let other = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    other
        .execute_batch("PRAGMA journal_mode = DELETE; CREATE TABLE photos (id INTEGER);")
        .unwrap();
    drop(other);
    refused_untouched(&data, "of something else");
}

#[test]
fn a_newer_database_not_in_wal_mode_is_refused_before_anything_writes() {
    // As `slices backup` writes it (no WAL), from a Slices newer than this one.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::serve::make_data(None, Some(&data));
    let copy = dir.path().join("copy.db");
    slices::store::backup(&data.join("slices.db"), &copy).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::rename(&copy, data.join("slices.db")).unwrap();
    let c = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    c.pragma_update(None, "user_version", 999).unwrap();
    drop(c);
    refused_untouched(&data, "newer than this binary");
}

#[test]
fn the_lock_is_taken_before_the_database_is_migrated() {
    // A database one version behind, and a master (here: this test) holding the folder.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let all = slices::store::migrations().unwrap();
    let behind = all.len() as i64 - 1;
    let c = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    for (v, sql) in all.iter().filter(|(v, _)| *v <= behind) {
        c.execute_batch(sql).unwrap();
        c.pragma_update(None, "user_version", v).unwrap();
    }
    drop(c);
    let lock = std::fs::File::create(data.join("master.lock")).unwrap();
    lock.try_lock().unwrap();
    refused_untouched(&data, "another slices master is running");
    let c = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, behind, "not migrated under the running master");
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(ok.success(), "mount a tmpfs (the tests run as root)");
        SmallDisk(at.to_path_buf())
    }

    /// Fills it up with one file; returns the file.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk under the data folder: the user is told the server cannot save right now and
/// that nothing was lost, `/healthz` says the store is failing (503, with the reason), and
/// once there is room again all works without a restart; nothing was half-saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_said_plainly_and_recovered_from_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "24m");
    let data = disk.0.join("data");
    let served = crate::serve::Served::start(&data, "info");
    served.first_admin("ada").await;
    let base = served.base.clone();
    let health = || async {
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(health().await.0, 200);

    let filler = disk.fill();
    // Sign-ups until one cannot be saved (the database's journal may hold a little room).
    let mut refused = None;
    for i in 0..200 {
        let c = crate::http::browser();
        let name = format!("s{i:03}");
        let token = crate::http::csrf(&c, &format!("{base}/signup")).await;
        let r = c
            .post(format!("{base}/signup"))
            .header("Origin", &base)
            .form(&[
                ("username", name.as_str()),
                ("email", &format!("{name}@example.edu")),
                ("display_name", "S"),
                ("password", "correct horse battery"),
                ("password_confirm", "correct horse battery"),
                ("csrf", &token),
            ])
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert!(r.headers().contains_key("retry-after"));
            let page = r.text().await.unwrap();
            assert!(page.contains("cannot save right now"), "{page}");
            assert!(page.contains("Nothing was lost"), "{page}");
            refused = Some(name);
            break;
        }
        assert_eq!(r.status(), 303, "saved while there was room");
    }
    let refused = refused.expect("a sign-up on a full disk is refused");
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failing") && body.contains("full"), "{body}");

    // Room again: healthy, without a restart; the refused sign-up was not half-saved.
    std::fs::remove_file(filler).unwrap();
    let start = std::time::Instant::now();
    while health().await.0 != 200 {
        assert!(start.elapsed().as_secs() < 10, "healthy again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let db = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    let half: i64 = db
        .query_row(
            "SELECT count(*) FROM users WHERE username = ?1",
            [&refused],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(half, 0, "nothing of the refused sign-up was kept");
    let ada = crate::http::browser();
    let r = crate::http::log_in(&ada, &base, "ada").await;
    assert_eq!(r, 303, "what was saved before is all there");
    drop(served);
}
