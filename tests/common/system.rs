//! Shared by the system tests that drive real host parts (LXC, bridges, sshd, Apache).
//!
//! They run when `TEST_SLICES_SYSTEM=1` (the README's test command sets it, after installing
//! what they need). Without it they say they were skipped; with it, a missing part is a
//! failure, never a silent pass.

use std::path::PathBuf;
use std::process::Command;

/// True when system tests should run; prints why not otherwise.
pub fn enabled(test: &str) -> bool {
    if std::env::var("TEST_SLICES_SYSTEM").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("{test}: skipped (set TEST_SLICES_SYSTEM=1, as scripts/test.sh does, to run it)");
    false
}

/// For a system test: `None` (and a line saying so) unless system tests are asked for; else a
/// guard that runs this test alone among the system tests, held until the test ends (they
/// share this machine's bridges, accounts, forwarding and two cores). A failed test releases
/// it too.
pub async fn alone(test: &str) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if !enabled(test) {
        return None;
    }
    Some(ONE_AT_A_TIME.lock().await)
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command and ignores how it ends (clean-up).
pub fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

/// Detaches every loop device whose file is under `dir`: the slices' disks of a test's agent
/// that ran in a mount namespace of its own (when that namespace goes, the mount goes, the
/// device stays). Called by the labs' clean-ups.
pub fn detach_loops_under(dir: &std::path::Path) {
    let Ok(out) = Command::new("losetup")
        .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
        .output()
    else {
        return;
    };
    // The kernel names the file from the root of its own file system once the namespace that
    // mounted it is gone (`/slices-x/...` for `/dev/shm/slices-x/...`): any tail of `dir`'s path
    // matches (the test folders' names are random).
    let parts: Vec<String> = dir
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let tails: Vec<String> = (0..parts.len())
        .map(|i| format!("/{}/", parts[i..].join("/")))
        .collect();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((dev, file)) = line.trim().split_once(' ') {
            let file = file.trim();
            if tails.iter().any(|t| file.starts_with(t.as_str())) {
                quiet("losetup", &["-d", dev]);
            }
        }
    }
}

/// The cached OS template (built once per machine by scripts/lab/os-template.sh).
pub fn template() -> PathBuf {
    if let Ok(p) = std::env::var("TEST_SLICES_TEMPLATE") {
        return PathBuf::from(p);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab/os-template.sh");
    PathBuf::from(sh("bash", &[script]).trim())
}

/// A bridge with the host's address on it, removed on drop.
pub struct Bridge {
    pub name: String,
}

impl Bridge {
    pub fn new(name: &str, host_cidr: &str) -> Bridge {
        assert!(name.len() <= 15);
        quiet("ip", &["link", "del", name]);
        sh("ip", &["link", "add", name, "type", "bridge"]);
        sh("ip", &["addr", "add", host_cidr, "dev", name]);
        sh("ip", &["link", "set", name, "up"]);
        Bridge { name: name.into() }
    }

    /// Interfaces still attached to the bridge.
    pub fn ports(&self) -> Vec<String> {
        sh("ip", &["-o", "link", "show", "master", &self.name])
            .lines()
            .filter_map(|l| {
                l.split(": ")
                    .nth(1)
                    .map(|n| n.split('@').next().unwrap_or(n).to_string())
            })
            .collect()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        quiet("ip", &["link", "del", &self.name]);
    }
}

/// Waits until a TCP port answers, up to `secs`.
pub fn wait_for_port(addr: &str, secs: u64) -> std::time::Duration {
    let start = std::time::Instant::now();
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    while start.elapsed().as_secs() < secs {
        if std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_millis(200)).is_ok()
        {
            return start.elapsed();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{addr} did not answer within {secs} s");
}

/// A new ed25519 key pair in `dir`: (private key path, public key line).
pub fn keypair(dir: &std::path::Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    sh(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            key.to_str().unwrap(),
        ],
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// `ssh` options for test hosts whose keys are new every time.
pub const SSH_OPTS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=ERROR",
];

/// Waits until `ok` holds, looking every 100 ms; fails the test naming `what` after `secs`.
pub async fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "timed out: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A Unix account on this host made by the test (not by Slices: shell /bin/sh), removed on
/// drop, also when the test fails.
pub struct HostAccount(pub &'static str);

impl HostAccount {
    pub fn make(name: &'static str) -> HostAccount {
        quiet("userdel", &[name]);
        sh("useradd", &["-M", "-s", "/bin/sh", name]);
        HostAccount(name)
    }
}

impl Drop for HostAccount {
    fn drop(&mut self) {
        quiet("userdel", &[self.0]);
    }
}
