//! The archive of a slice's /home through the pages, with a real agent behind real mutual TLS:
//! its owner asks for one, the node packs it, the download streams through the master and is
//! exactly what the node made (SHA-256); a link cut mid-download goes on where it stopped; an
//! archive damaged on the node is never handed out as whole; nobody else may see it.

use std::io::Read;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use slices::domain::Role;

use crate::fleet::*;
use crate::http::{browser, form};

const SUBNET: &str = "10.86.0.0/24";

/// Waits (at most `secs`) until the slice's archive is packed: its size and SHA-256.
async fn wait_ready(f: &Fleet, id: i64, secs: u64) -> (i64, String) {
    let start = Instant::now();
    loop {
        let row = f
            .ctx
            .db
            .read(move |c| slices::records::exports::get(c, id))
            .unwrap();
        match row {
            Some(e) if e.state == "ready" => return (e.size.unwrap(), e.sha256.unwrap()),
            Some(e) if e.state == "failed" => panic!("packing failed: {}", e.error),
            _ => {}
        }
        assert!(start.elapsed().as_secs() < secs, "not packed: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The names in a `.tar.gz`, and the bytes of one of them.
fn unpack(gz: &[u8], want: &str) -> (Vec<String>, Vec<u8>) {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let (mut names, mut got) = (Vec::new(), Vec::new());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name.trim_start_matches("./") == want {
            e.read_to_end(&mut got).unwrap();
        }
        names.push(name);
    }
    (names, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_students_home_downloads_whole_through_the_master() {
    let mut f = fleet(1, |_| SUBNET.into(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    f.user("bob", Role::Student);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &tess);
    let slice = f.wait_for(id, slices::slices::State::Running, 30).await;
    let veid = slice.veid.unwrap();

    // What the student has in /home: a note and 24 MB that do not compress.
    let home = f.nodes[0].state.join(format!("sim/{veid}.home/alice"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("notes.txt"), b"my thesis, chapter 1\n").unwrap();
    let mut big = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(home.join("data.bin"), &big).unwrap();

    let a = browser();
    crate::http::log_in(&a, &base, "alice").await;
    let page = a
        .get(format!("{base}/slices/{id}/archive"))
        .send()
        .await
        .unwrap();
    let status = page.status();
    let text = page.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("No archive has been packed yet"), "{text}");
    let got = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 404, "nothing to download before it is packed");

    // Another student sees nothing of it, and cannot ask for one.
    let b = browser();
    crate::http::log_in(&b, &base, "bob").await;
    for path in ["archive", "archive/home.tar.gz"] {
        let r = b
            .get(format!("{base}/slices/{id}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let status = form(&b, &base, "/", &format!("/slices/{id}/archive"), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(f.count("SELECT count(*) FROM exports"), 0);

    let status = form(
        &a,
        &base,
        &format!("/slices/{id}/archive"),
        &format!("/slices/{id}/archive"),
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    // Asked twice while packing: one job.
    let again = form(
        &a,
        &base,
        &format!("/slices/{id}/archive"),
        &format!("/slices/{id}/archive"),
        &[],
    )
    .await;
    assert_eq!(again, reqwest::StatusCode::SEE_OTHER);
    let (size, sha) = wait_ready(&f, id, 30).await;
    assert!(f.count("SELECT count(*) FROM jobs WHERE kind = 'export'") <= 2);
    let text = a
        .get(format!("{base}/slices/{id}/archive"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&sha), "the page shows the SHA-256: {text}");

    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".tar.gz"));
    let body = r.bytes().await.unwrap();
    assert_eq!(sha_hex(&body), sha, "what arrived is what the node made");
    let (names, data) = unpack(&body, "alice/data.bin");
    assert!(
        names.iter().any(|n| n.ends_with("alice/notes.txt")),
        "{names:?}"
    );
    assert_eq!(sha_hex(&data), sha_hex(&big), "the file inside is intact");

    // A browser resumes a cut download: the rest from where it stopped, if it is still this
    // archive (If-Range names it); for another archive, the whole file again.
    let from = 5_000_000usize;
    let etag = format!("\"{sha}\"");
    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .header("Range", format!("bytes={from}-"))
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {from}-{}/{size}", size - 1).as_str()
    );
    let rest = r.bytes().await.unwrap();
    assert_eq!(&rest[..], &body[from..], "the rest, byte for byte");
    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .header("Range", format!("bytes={from}-"))
        .header("If-Range", "\"an older archive\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len() as i64, size);
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'archive_downloaded'"),
        3,
        "each download, resumed or whole, is in the audit log"
    );

    // The link is cut mid-download (the agent goes down and comes back on its address): the
    // master reads on from where it stopped, and the file is whole.
    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap();
    use futures_util::StreamExt;
    let mut stream = r.bytes_stream();
    let mut body = stream.next().await.unwrap().unwrap().to_vec();
    let address = f.nodes[0].address.clone();
    f.nodes[0].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = start_agent_on(f.dir.path(), &f.ca, "node0", SUBNET, 0, &address).await;
    f.nodes[0] = back;
    while let Some(piece) = stream.next().await {
        body.extend_from_slice(&piece.expect("the download goes on"));
    }
    assert_eq!(body.len() as i64, size);
    assert_eq!(sha_hex(&body), sha, "whole after the cut");

    // Damaged on the node after packing: the download breaks before its end instead of
    // handing out a file that looks whole.
    let on_node = f.nodes[0]
        .state
        .join(format!("exports/{veid}-{sha}.tar.gz"));
    let mut damaged = std::fs::read(&on_node).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&on_node, &damaged).unwrap();
    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let (mut n, mut broke) = (0usize, false);
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(p) => n += p.len(),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the download must fail, not end short or whole");
    assert!(
        (n as i64) < size,
        "the last piece is held back: {n} of {size}"
    );

    // Staff may pack and download it too (their download is in the audit log as theirs).
    let t = browser();
    crate::http::log_in(&t, &base, "tess").await;
    let status = form(
        &t,
        &base,
        &format!("/slices/{id}/archive"),
        &format!("/slices/{id}/archive"),
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let (_, sha2) = wait_ready(&f, id, 30).await;
    let body = t
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha_hex(&body), sha2);
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM audit WHERE event = 'archive_downloaded' AND actor_id = {}",
            tess.id
        )),
        1
    );
    assert_eq!(
        std::fs::read_dir(f.nodes[0].state.join("exports"))
            .unwrap()
            .count(),
        1,
        "a new archive replaces the old one on the node"
    );

    // Destroyed: the archive goes with the slice.
    f.ctx
        .db
        .write(|tx| {
            slices::slices::act(tx, &alice, id, slices::jobs::JobKind::Destroy, "127.0.0.1")
        })
        .unwrap();
    f.wait_for(id, slices::slices::State::Destroyed, 30).await;
    assert_eq!(f.count("SELECT count(*) FROM exports"), 0);
    assert_eq!(
        std::fs::read_dir(f.nodes[0].state.join("exports"))
            .unwrap()
            .count(),
        0
    );
    jobs.stop().await;
}

/// The real master process: a home of 1 GB that does not compress is packed on the node and
/// downloaded through the master, which never holds more than a few pieces of it (its
/// memory, read from /proc while the download runs, stays under 64 MB), and the archive is
/// intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_home_downloads_through_the_real_master_in_little_memory() {
    let f = fleet(1, |_| SUBNET.into(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let port = crate::common::gateway_lab::free_port();
    let master = f.start_master_on(&format!("127.0.0.1:{port}"), &[]);
    let base = format!("http://127.0.0.1:{port}");
    let id = f.request_and_approve(&alice, &tess);
    let slice = f.wait_for(id, slices::slices::State::Running, 60).await;

    // 1 GB: one random MiB written 1024 times, each with its number (deflate's 32 KiB window
    // finds nothing to take out).
    let home = f.nodes[0]
        .state
        .join(format!("sim/{}.home/alice", slice.veid.unwrap()));
    std::fs::create_dir_all(&home).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(home.join("big.bin")).unwrap());
        for i in 0..1024u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            out.write_all(&block).unwrap();
        }
    }

    let a = browser();
    let start = Instant::now();
    while crate::http::log_in(&a, &base, "alice").await != reqwest::StatusCode::SEE_OTHER {
        assert!(start.elapsed().as_secs() < 30, "the master does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = form(
        &a,
        &base,
        &format!("/slices/{id}/archive"),
        &format!("/slices/{id}/archive"),
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let (size, sha) = wait_ready(&f, id, 240).await;
    assert!(size > 1_000_000_000, "{size}");

    let pid = master.0.id();
    let rss = move |key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    let r = a
        .get(format!("{base}/slices/{id}/archive/home.tar.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    use futures_util::StreamExt;
    let (mut stream, mut hash, mut n, mut peak) = (r.bytes_stream(), Sha256::new(), 0u64, 0u64);
    let started = Instant::now();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        hash.update(&piece);
        n += piece.len() as u64;
        peak = peak.max(rss("VmRSS:"));
    }
    let secs = started.elapsed().as_secs_f64();
    let got: String = hash.finalize().iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!(n as i64, size);
    assert_eq!(got, sha, "the archive is intact");
    let hwm = rss("VmHWM:");
    println!(
        "1 GB home through the master: {:.0} MB/s; master memory peak {peak} MB while downloading, {hwm} MB over its life",
        size as f64 / 1e6 / secs
    );
    assert!(peak < 64, "the master held {peak} MB while streaming");
    assert!(hwm < 64, "the master's peak was {hwm} MB");
    drop(master);
}
