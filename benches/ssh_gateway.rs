//! The built-in SSH gateway against direct ssh to the slice and against the seed's Unix-account
//! gateway (a real sshd whose accounts' login shells forward), in one run, with real LXC slices
//! and the real OpenSSH client: time to a command's first byte, scp throughput, and the master's
//! memory per open session. Prints figures; asserts nothing.
//!   cargo bench --bench ssh_gateway   (root, LXC, the cached OS template; TEST_SLICES_TEMPLATE)
//! ROUNDS (default 20), SCP_MB (default 1024), SESSIONS (default 50).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{fleet, gateway_lab, lxc_node, system};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slices::accounts::{self, Actor};
use slices::domain::{Role, SshPublicKey};
use slices::slices::State;

#[path = "common/mod.rs"]
mod bench;
use bench::{median, self_cpu_secs};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn ssh_args(port: u16, key: &Path, dest: &str) -> Vec<String> {
    let mut a: Vec<String> = system::SSH_OPTS.iter().map(|s| s.to_string()).collect();
    a.extend([
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-p".into(),
        port.to_string(),
        "-i".into(),
        key.display().to_string(),
        dest.into(),
    ]);
    a
}

/// Milliseconds from starting `ssh ... echo x` to the first byte of its output.
fn first_byte_ms(args: &[String]) -> f64 {
    use std::io::Read;
    let start = Instant::now();
    let mut child = Command::new("ssh")
        .args(args)
        .arg("echo x")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut b = [0u8; 1];
    let n = child.stdout.as_mut().unwrap().read(&mut b).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(n, 1, "ssh {args:?} printed nothing");
    let _ = child.wait();
    ms
}

/// Waits until `ssh ARGS true` succeeds (the slice's sshd and keys may still be coming).
fn wait_login(args: &[String]) {
    let start = Instant::now();
    while !Command::new("ssh")
        .args(args)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no login: {args:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

async fn run() {
    let rounds = env("ROUNDS", 20) as usize;
    let scp_mb = env("SCP_MB", 1024);
    let sessions = env("SESSIONS", 50) as usize;
    let extra = vec![("ssh_listen", "127.0.0.1:0".to_string())];
    let f = fleet::fleet_with(0, |_| String::new(), 0, &extra).await;
    let gw = slices::ssh_gateway::start(&f.ctx).await.unwrap().unwrap();
    let port = gw.addr.port();
    let node = lxc_node::start_with_ca("bg1", "slbr-bgw", "10.87.0.0/24", Some(&f.ca)).await;
    f.add_node("bg1", &node.address);
    let staff = f.user("tess", Role::Staff);
    let student = f.user("bench", Role::Student);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = system::keypair(keys.path(), "bench");
    f.ctx
        .db
        .write(|tx| {
            accounts::keys::add(
                tx,
                student.id,
                &SshPublicKey::parse(&public).unwrap(),
                &Actor::default(),
            )
        })
        .unwrap();
    let id = f.request_and_approve(&student, &staff);
    let jobs = f.run_jobs(|c| c.agent_timeout = Duration::from_secs(180));
    let slice = f.wait_for(id, State::Running, 180).await;
    let ip = slice.ip.unwrap();
    // Direct: the same sshd, with the hop key the gateway uses.
    let hop = f
        .ctx
        .config
        .data
        .join("gateway/home/users/bench/.ssh/slice_ed25519");
    let through = ssh_args(port, &key, "bench@127.0.0.1");
    let direct = ssh_args(22, &hop, &format!("bench@{ip}"));
    // Wait for the slice's sshd and keys.
    wait_login(&through);

    // The seed's gateway: a second master whose target is a real sshd on loopback, whose
    // accounts' login shells ssh on into a slice of its own node.
    let lab = gateway_lab::Lab::start();
    let f2 = fleet::fleet_with(0, |_| String::new(), 0, &lab.settings()).await;
    let settings = slices::gateway::Settings::from_config(&f2.ctx.config).unwrap();
    lab.authorize(&lab.admin, &slices::gateway::master_key(&settings).unwrap());
    let node2 = lxc_node::start_with_ca("bg2", "slbr-bgw2", "10.90.0.0/24", Some(&f2.ca)).await;
    f2.add_node("bg2", &node2.address);
    let staff2 = f2.user("tess", Role::Staff);
    let seeded = f2.user("slbench-u", Role::Student);
    f2.ctx
        .db
        .write(|tx| {
            accounts::keys::add(
                tx,
                seeded.id,
                &SshPublicKey::parse(&public).unwrap(),
                &Actor::default(),
            )
        })
        .unwrap();
    let id2 = f2.request_and_approve(&seeded, &staff2);
    let jobs2 = f2.run_jobs(|c| c.agent_timeout = Duration::from_secs(180));
    f2.wait_for(id2, State::Running, 180).await;
    let unix = ssh_args(lab.ssh_port, &key, "slbench-u@127.0.0.1");
    wait_login(&unix);

    println!("Time from `ssh` to the first byte of `echo x`, median of {rounds} (ms):");
    let (mut g, mut d, mut u) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        g.push(first_byte_ms(&through));
        d.push(first_byte_ms(&direct));
        u.push(first_byte_ms(&unix));
    }
    let (g, d, u) = (median(g), median(d), median(u));
    println!("  through the built-in gateway  {g:7.1}");
    println!("  direct to the slice           {d:7.1}");
    println!("  the Unix-account gateway      {u:7.1}");
    println!("  added by the gateway          {:7.1}  (its own handshake with the student, its handshake with the slice, and the relay)", g - d);
    // OpenSSH's default key exchange (post-quantum) costs more than the gateway's with the
    // slice (curve25519): the same exchange on both, to see the gateway's own cost.
    let same = [
        "-o".to_string(),
        "KexAlgorithms=curve25519-sha256".to_string(),
    ];
    let through_c: Vec<String> = same
        .iter()
        .cloned()
        .chain(through.iter().cloned())
        .collect();
    let direct_c: Vec<String> = same.iter().cloned().chain(direct.iter().cloned()).collect();
    let unix_c: Vec<String> = same.iter().cloned().chain(unix.iter().cloned()).collect();
    let (mut g, mut d, mut u) = (vec![], vec![], vec![]);
    for _ in 0..rounds {
        g.push(first_byte_ms(&through_c));
        d.push(first_byte_ms(&direct_c));
        u.push(first_byte_ms(&unix_c));
    }
    let (g, d, u) = (median(g), median(d), median(u));
    println!("With curve25519-sha256 on the student's leg:");
    println!("  through the built-in gateway  {g:7.1}");
    println!("  direct to the slice           {d:7.1}");
    println!("  the Unix-account gateway      {u:7.1}");
    println!("  added by the gateway          {:7.1}  (one more handshake, with the slice, and the relay)", g - d);

    // Throughput: scp of a file to /dev/null in the slice.
    let file = keys.path().join("payload");
    Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M"])
        .arg(format!("of={}", file.display()))
        .arg(format!("count={scp_mb}"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let scp = |port: u16, key: &Path, dest: &str, cipher: &str| -> f64 {
        let mut a: Vec<String> = system::SSH_OPTS.iter().map(|s| s.to_string()).collect();
        if !cipher.is_empty() {
            a.extend(["-c".to_string(), cipher.to_string()]);
        }
        a.extend([
            "-P".into(),
            port.to_string(),
            "-i".into(),
            key.display().to_string(),
            file.display().to_string(),
            format!("{dest}:/dev/null"),
        ]);
        let start = Instant::now();
        // (scp reports it cannot set /dev/null's times: said on stderr, not an error.)
        let ok = Command::new("scp")
            .args(&a)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "scp {a:?}");
        scp_mb as f64 / start.elapsed().as_secs_f64()
    };
    for cipher in ["", "aes128-gcm@openssh.com"] {
        let cpu = self_cpu_secs();
        let tg = scp(port, &key, "bench@127.0.0.1", cipher);
        let cpu = self_cpu_secs() - cpu;
        let td = scp(22, &hop, &format!("bench@{ip}"), cipher);
        let tu = scp(lab.ssh_port, &key, "slbench-u@127.0.0.1", cipher);
        let named = if cipher.is_empty() {
            "the client's default cipher"
        } else {
            cipher
        };
        println!("scp of {scp_mb} MB (MB/s), {named}:");
        println!("  through the built-in gateway  {tg:7.1}");
        println!("  direct to the slice           {td:7.1}");
        println!("  the Unix-account gateway      {tu:7.1}");
        println!("  ratio, built-in to direct     {:7.0} %", tg / td * 100.0);
        println!(
            "  the gateway's CPU             {:7.2} s per GB (both legs' encryption and the relay)",
            cpu * 1024.0 / scp_mb as f64
        );
    }

    // Memory: this process holds the master and its gateway; sessions held open a while.
    let before = rss_kb();
    let children: Vec<_> = (0..sessions)
        .map(|_| {
            Command::new("ssh")
                .args(&through)
                .arg("sleep 20")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let during = rss_kb();
    for mut c in children {
        let _ = c.wait();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kb();
    println!("Memory of the master process with {sessions} sessions open (kB RSS):");
    println!("  before {before}, during {during}, after {after}");
    println!(
        "  per session                   {:7.0} kB",
        (during.saturating_sub(before)) as f64 / sessions as f64
    );
    gw.stop().await;
    jobs.stop().await;
    drop(node);
    // The Unix gateway's account goes with its slice (the lab removes what is left).
    f2.ctx
        .db
        .write(|tx| slices::slices::act(tx, &seeded, id2, slices::jobs::JobKind::Destroy, ""))
        .unwrap();
    f2.wait_for(id2, State::Destroyed, 120).await;
    jobs2.expect_leftovers();
    jobs2.stop().await;
    drop(node2);
    drop(lab);
}
