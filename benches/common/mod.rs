//! What the benchmarks share: reading a process's CPU time and memory from `/proc`, a free
//! port, waiting for a server to go idle, the median of runs. Each benchmark includes this file
//! (`#[path = "common/mod.rs"] mod bench;`) and uses the part it needs.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_sec() -> f64 {
    static HZ: OnceLock<f64> = OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The processes under `pid` (itself first, then its children, theirs...).
fn tree(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        out.push(p);
        if let Ok(kids) = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")) {
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// CPU seconds (user + system) the process has used so far (0 once it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / ticks_per_sec()
}

/// CPU seconds of this process (an in-process master).
pub fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id())
}

/// CPU seconds of the process and all its children (gunicorn's workers).
pub fn tree_cpu_secs(pid: u32) -> f64 {
    tree(pid).into_iter().map(cpu_secs).sum()
}

/// Resident memory of the process, in MiB (0 once it is gone).
pub fn rss_mb(pid: u32) -> f64 {
    let kb: f64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Resident memory of the process and all its children, in MiB.
pub fn tree_rss_mb(pid: u32) -> f64 {
    tree(pid).into_iter().map(rss_mb).sum()
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the process (with its children) has done its start-up work: it used almost
/// no CPU for a second (at most 10 minutes).
pub async fn wait_idle(pid: u32) {
    let mut last = tree_cpu_secs(pid);
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = tree_cpu_secs(pid);
        if now - last < 0.02 {
            return;
        }
        last = now;
    }
}

/// The median (NaN, printed "NaN", when there is nothing: a side did not run).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
