//! Floods at an agent's port from addresses that are not the master's, against the real
//! binaries: 10,000 silent connections from 21 addresses (enough to fill every handshake slot
//! the agent has for strangers) and 1,000 slow handshakes (a byte every half second) neither
//! stop the agent nor keep out or slow the master (whose address the agent knows from its
//! earlier links), on `slices-agent` (run with only 1,024 file descriptors) and on the
//! built-in agent of `slices serve`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

/// The test's own file descriptor limit raised to its hard limit; how many silent
/// connections it can hold (10,000 unless the machine allows fewer).
fn room_for_connections() -> usize {
    let pid = std::process::id().to_string();
    let hard = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--output",
            "HARD",
            "--noheadings",
        ])
        .output()
        .unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    let hard: usize = hard.parse().unwrap_or(1024);
    let set = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
        .status()
        .unwrap();
    assert!(set.success());
    10_000.min(hard.saturating_sub(2_500))
}

async fn connect_from(source: &str, to: SocketAddr) -> Option<TcpStream> {
    let s = TcpSocket::new_v4().ok()?;
    s.bind(format!("{source}:0").parse().unwrap()).ok()?;
    tokio::time::timeout(Duration::from_secs(5), s.connect(to))
        .await
        .ok()?
        .ok()
}

/// Silent connections from 21 addresses (127.0.0.10 to .30: together more than the agent's
/// whole handshake room), held open; how many connected.
async fn silent(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let sources: Vec<String> = (10..=30).map(|i| format!("127.0.0.{i}")).collect();
    let mut held = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
        let tries = chunk
            .iter()
            .map(|i| connect_from(&sources[i % sources.len()], to));
        held.extend(
            futures_util::future::join_all(tries)
                .await
                .into_iter()
                .flatten(),
        );
    }
    held
}

/// Slow handshakes from 127.0.0.3: a TLS record header, then a byte every half second, for
/// `secs`.
fn slowloris(to: SocketAddr, n: usize, secs: u64) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Some(mut s) = connect_from("127.0.0.3", to).await else {
                    return;
                };
                let start = Instant::now();
                let hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
                let mut i = 0;
                while start.elapsed() < Duration::from_secs(secs) {
                    if s.write_all(&hello[i % hello.len()..][..1]).await.is_err() {
                        return;
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        })
        .collect()
}

/// `slices node ping NODE -n 100` from the master's data folder: (connect + handshake, max).
fn master_ping(data: &std::path::Path, node: &str) -> (f64, f64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slices"))
        .args(["node", "ping", node, "-n", "100", "--data"])
        .arg(data)
        .env_remove("SLICES_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number_after = |label: &str| -> f64 {
        let at = text
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {text}"))
            + label.len();
        text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (number_after("TLS handshake"), number_after("max"))
}

/// The flood and the slow handshakes against `to`, with the master's pings measured in the
/// middle of them; `alive` says whether the agent still runs.
async fn flood_and_ping(
    to: SocketAddr,
    data: &std::path::Path,
    node: &str,
    alive: impl Fn() -> bool,
) {
    let n = room_for_connections();
    let (connect, max) = master_ping(data, node);
    eprintln!("before: connect {connect:.2} ms, max ping {max:.3} ms");
    let slow = slowloris(to, 1_000, 20);
    let started = Instant::now();
    let held = silent(to, n).await;
    eprintln!(
        "{} of {n} silent connections made in {:.1} s; 1,000 slow handshakes going",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        held.len() >= n * 9 / 10,
        "the flood connected: {}",
        held.len()
    );
    assert!(alive(), "the agent survived the flood");
    let (connect, max) = master_ping(data, node);
    eprintln!("during: connect {connect:.2} ms, max ping {max:.3} ms");
    assert!(connect < 50.0, "a new link from the master in {connect} ms");
    assert!(max < 50.0, "every ping under 50 ms: {max}");
    drop(held);
    for s in slow {
        s.abort();
    }
    assert!(alive(), "the agent still runs");
    let (connect, max) = master_ping(data, node);
    eprintln!("after: connect {connect:.2} ms, max ping {max:.3} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_the_agents_port_neither_stops_it_nor_slows_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let node = super::binaries::enrol(dir.path(), "node7");
    // Few descriptors, as a default unit would have: the flood cannot be held, only refused.
    let mut agent = node.start_agent(&["prlimit", "--nofile=1024:1024"]);
    let to: SocketAddr = node.address.parse().unwrap();
    let child = std::sync::Mutex::new(&mut agent.0);
    flood_and_ping(to, &node.data, "node7", || {
        child.lock().unwrap().try_wait().unwrap().is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_at_the_built_in_agent_leaves_the_master_and_its_node_answering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served =
        crate::serve::Served::start_under(&data, "info", &["prlimit", "--nofile=1024:1024"]);
    assert!(served.simulated);
    let db = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    let address: String = db
        .query_row("SELECT address FROM nodes WHERE name = 'local'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let to: SocketAddr = address.parse().unwrap();
    let base = served.base.clone();
    flood_and_ping(to, &data, "local", || {
        std::net::TcpStream::connect(base.trim_start_matches("http://")).is_ok()
    })
    .await;
}
