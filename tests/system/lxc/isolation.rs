//! What a student's root can and cannot do, tried for real: two unprivileged LXC slices on one
//! node (in a network namespace, with the agent's network policy), the student of the first
//! root through `sudo`, trying each way out an attacker would.

use std::io::Read;
use std::time::{Duration, Instant};

use slices::domain::{DnsName, Limits, PrivateIp, TemplateName, Username, VeId};
use slices::slave_link::{Command as Cmd, EnvSpec};

use super::nslab::{connects, Names, NsLab};
use crate::system::*;

const A: u32 = 4301;
const B: u32 = 4302;
const IP_A: &str = "10.98.0.11";
const IP_B: &str = "10.98.0.12";
const DISK_MB: u32 = 512;

fn spec(id: u32, ip: &str, user: &str, key: &str) -> EnvSpec {
    EnvSpec {
        id: VeId::new(id as u64).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse(user).unwrap(),
        ip: PrivateIp::parse(ip).unwrap(),
        hostname: DnsName::parse(user).unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits {
            memory_mb: 192,
            memory_limit_mb: 384,
            processes: 100,
            disk_mb: DISK_MB,
            cpu_shares: 1024,
        },
        keys: vec![key.parse().unwrap()],
        root: true,
    }
}

/// Whatever a command printed (both streams) and whether it succeeded.
fn said(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The host uid a container's init runs as.
fn host_uid_of_init(lab: &NsLab, id: u32) -> u64 {
    let pid = lab.ns(
        "lxc-info",
        &["-P", &lab.lxc_path(), "-n", &format!("ve{id}"), "-p", "-H"],
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// Free bytes of the file system that holds `path` (as `df` says).
fn free_bytes(path: &std::path::Path) -> u64 {
    let out = sh("df", &["-B1", "--output=avail", path.to_str().unwrap()]);
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

pub async fn a_students_root_is_confined() {
    let mut lab = NsLab::new(
        Names {
            ns: "slnet-iso",
            host_if: "slv-iso",
            bridge: "slbr-iso",
            outside: "10.97.0.0",
            subnet: "10.98.0.0/24",
        },
        "iso1",
        "uplink = \"eth0\"",
    );
    lab.start_agent();
    let mut m = lab.master().await;
    let (_, public) = keypair(lab.work.path(), "iso-key");
    // Ana's plan makes her root; Ben's does not.
    let a = spec(A, IP_A, "ana", &public);
    let b = EnvSpec {
        root: false,
        ..spec(B, IP_B, "ben", &public)
    };
    let state_dir = lab.work.path().join("state");
    for s in [&a, &b] {
        let r = m.call(&Cmd::CreateEnv(Box::new(s.clone()))).await.unwrap();
        assert_eq!(r.code, 0, "create_env: {}", r.text());
        let r = m.call(&Cmd::StartEnv(s.id)).await.unwrap();
        assert_eq!(r.code, 0, "start_env: {}", r.text());
    }
    wait_for_port(&format!("{IP_A}:22"), 60);
    wait_for_port(&format!("{IP_B}:22"), 60);
    let (_, uid) = said(&lab.attach(A, None, &["id", "-u", "ana"]));
    let uid: u32 = uid.trim().parse().expect("ana's uid");
    let as_ana = |args: &[&str]| said(&lab.attach(A, Some(uid), args));

    // Root through sudo, without a password.
    assert_eq!(as_ana(&["sudo", "-n", "id", "-u"]), (true, "0\n".into()));
    // Each slice's root is a host id of its own range, not the host's root, not the other's.
    let (root_a, root_b) = (host_uid_of_init(&lab, A), host_uid_of_init(&lab, B));
    for r in [root_a, root_b] {
        assert!(
            (1_000_000_000..1_000_000_000 + 16384 * 65536).contains(&r),
            "host uid of a slice's root: {r}"
        );
        assert_eq!((r - 1_000_000_000) % 65536, 0, "{r} starts a range");
    }
    assert_ne!(root_a, root_b, "two slices share host ids");

    // Root binds port 80, and the page answers from outside.
    let (ok, out) = as_ana(&[
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo 'ana serves' > /tmp/www/index.html && cd /tmp/www && \
         { sudo -n setsid python3 -m http.server 80 >/dev/null 2>&1 </dev/null & }",
    ]);
    assert!(ok, "{out}");
    let start = Instant::now();
    while !connects(&format!("{IP_A}:80"), 2) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 80 never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Root installs a package (a local .deb: the lab has no network to a mirror).
    let (ok, out) = as_ana(&[
        "sh",
        "-c",
        "set -e; mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/slices-hello; \
         printf 'Package: slices-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: Lab <lab@example.test>\\nDescription: a test package\\n' > /tmp/pkg/DEBIAN/control; \
         echo hello > /tmp/pkg/usr/share/slices-hello/hello; \
         dpkg-deb --root-owner-group --build /tmp/pkg /tmp/hello.deb; \
         sudo -n dpkg -i /tmp/hello.deb; dpkg -s slices-hello | grep 'Status: install ok installed'",
    ]);
    assert!(ok, "installing a .deb as root: {out}");

    // Refused to root in the slice: loading a kernel module (seccomp says EPERM)...
    let (_, out) = as_ana(&[
        "sudo",
        "-n",
        "python3",
        "-c",
        "import ctypes; l = ctypes.CDLL(None, use_errno=True); \
         r = l.syscall(313, -1, b'', 0); print(r, ctypes.get_errno())",
    ]);
    assert_eq!(out.trim(), "-1 1", "finit_module from a slice");
    // ... the kernel's settings and SysRq...
    let panic_before = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
    for write in [
        "echo 7 > /proc/sys/kernel/panic",
        "echo h > /proc/sysrq-trigger",
    ] {
        let (ok, out) = as_ana(&["sudo", "-n", "sh", "-c", write]);
        assert!(!ok, "{write}: {out}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/panic").unwrap(),
        panic_before
    );
    // ... a disk's device node, and mounting a host block device...
    for cmd in [
        "mknod /tmp/disk b 7 0 && head -c 512 /tmp/disk | wc -c",
        "mount -t ext4 /dev/loop0 /mnt",
    ] {
        let (ok, out) = as_ana(&["sudo", "-n", "sh", "-c", cmd]);
        assert!(!ok, "{cmd}: {out}");
    }
    // ... the clock...
    let (ok, out) = as_ana(&["sudo", "-n", "date", "-s", "@0"]);
    assert!(!ok, "setting the clock: {out}");
    // ... the host's processes: not seen, not signalled.
    let me = std::process::id().to_string();
    let (ok, out) = as_ana(&["sudo", "-n", "kill", "-0", &me]);
    assert!(!ok, "signalled a host process: {out}");
    let (_, out) = as_ana(&["sudo", "-n", "ps", "-eo", "cmd"]);
    assert!(
        !out.contains("slices-agent") && !out.contains("system-"),
        "host processes seen from a slice: {out}"
    );

    // Walls: the other slice only on the ports open to the outside; the node not at all.
    for port in [80, 8080] {
        let serve = format!(
            "cd /tmp && {{ setsid python3 -m http.server {port} >/dev/null 2>&1 </dev/null & }}"
        );
        lab.attach(B, None, &["sh", "-c", &serve]);
    }
    let start = Instant::now();
    while !lab.reaches(B, "127.0.0.1/8080") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "B's 8080 never listened"
        );
    }
    assert!(
        lab.reaches(A, &format!("{IP_B}/80")),
        "A reaches B's port 80"
    );
    // And only through the host: its ports on the bridge are isolated, and the host answered
    // ARP for B (A's neighbour entry for B is the bridge's address).
    let ports = lab.ns("bridge", &["-d", "link", "show", "master", "slbr-iso"]);
    assert_eq!(
        ports.matches("isolated on").count(),
        2,
        "both slices' ports isolated: {ports}"
    );
    let bridge_mac = lab
        .ns("cat", &["/sys/class/net/slbr-iso/address"])
        .trim()
        .to_string();
    let (_, neigh) = said(&lab.attach(A, None, &["ip", "neigh", "show", IP_B]));
    assert!(neigh.contains(&bridge_mac), "{neigh} (bridge {bridge_mac})");

    assert!(
        !lab.reaches(A, &format!("{IP_B}/8080")),
        "A reached B's port 8080"
    );
    assert!(
        !lab.reaches(A, "10.97.0.2/7070"),
        "A reached the agent's port"
    );
    assert!(
        !lab.reaches(A, "10.98.0.1/22"),
        "A reached the node's own sshd port"
    );
    // Without root, Ben cannot turn the agent's writes into root's: his key file made a link
    // to /etc/shadow, the agent puts his keys in place again, and /etc/shadow is untouched.
    let (_, ben) = said(&lab.attach(B, None, &["id", "-u", "ben"]));
    let ben: u32 = ben.trim().parse().unwrap();
    let (ok, out) = said(&lab.attach(B, Some(ben), &["sudo", "-n", "id", "-u"]));
    assert!(!ok, "ben is not root: {out}");
    let shadow_before = said(&lab.attach(B, None, &["sha256sum", "/etc/shadow"])).1;
    let (ok, out) = said(&lab.attach(
        B,
        Some(ben),
        &[
            "ln",
            "-sfn",
            "/etc/shadow",
            "/home/ben/.ssh/authorized_keys",
        ],
    ));
    assert!(ok, "{out}");
    let r = m.call(&Cmd::SetKeys(b.id, b.keys.clone())).await.unwrap();
    assert_eq!(r.code, 0, "set_keys: {}", r.text());
    assert_eq!(
        said(&lab.attach(B, None, &["sha256sum", "/etc/shadow"])).1,
        shadow_before,
        "the agent wrote through ben's link"
    );
    let (ok, out) = said(&lab.attach(
        B,
        None,
        &["sh", "-c", "test -f /home/ben/.ssh/authorized_keys && ! test -L /home/ben/.ssh/authorized_keys && stat -c '%U %a' /etc/shadow /home/ben/.ssh/authorized_keys"],
    ));
    assert!(ok, "{out}");
    assert_eq!(out, "root 640\nben 600\n");

    // The disk is the plan's: writing past it fails inside; the host lost at most its size.
    let free_before = free_bytes(&state_dir);
    let (ok, out) = as_ana(&[
        "sudo",
        "-n",
        "dd",
        "if=/dev/zero",
        "of=/var/fill",
        "bs=1M",
        &format!("count={}", DISK_MB + 100),
    ]);
    assert!(!ok, "wrote past the disk: {out}");
    assert!(out.contains("No space left on device"), "{out}");
    let lost = free_before.saturating_sub(free_bytes(&state_dir));
    assert!(
        lost <= (DISK_MB as u64 + 16) * 1024 * 1024,
        "the host lost {lost} bytes for a {DISK_MB} MB slice"
    );
    let r = m.call(&Cmd::Usage(Some(a.id))).await.unwrap();
    let counters = r.returned[0]["counters"].as_array().unwrap().clone();
    let disk = counters
        .iter()
        .find(|c| c["resource"] == "diskspace")
        .unwrap_or_else(|| panic!("no diskspace counter: {counters:?}"));
    let (held, limit) = (
        disk["held"].as_u64().unwrap(),
        disk["limit"].as_u64().unwrap(),
    );
    assert!(
        limit <= DISK_MB as u64 * 1024 * 1024 && limit > (DISK_MB as u64 - 64) * 1024 * 1024,
        "{disk}"
    );
    assert!(held + 16 * 1024 * 1024 > limit, "{disk}");
    assert!(disk["failcnt"].as_u64().unwrap() >= 1, "{disk}");
    as_ana(&["sudo", "-n", "rm", "-f", "/var/fill"]);

    // A fork bomb meets the processes limit; the neighbour still answers ssh within 2 s.
    let mut bomb = lab
        .cmd(
            "lxc-attach",
            &[
                "-P",
                &lab.lxc_path(),
                "-n",
                &format!("ve{A}"),
                "--clear-env",
                "-u",
                &uid.to_string(),
                "-g",
                &uid.to_string(),
                "--",
                "bash",
                "-c",
                "b() { b | b & }; b; sleep 30",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let r = m.call(&Cmd::Usage(Some(a.id))).await.unwrap();
        let procs = r.returned[0]["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["resource"] == "numproc")
            .cloned()
            .unwrap();
        if procs["failcnt"].as_u64().unwrap() > 0 {
            assert!(procs["held"].as_u64().unwrap() <= 100, "{procs}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{procs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = Instant::now();
    let mut conn = std::net::TcpStream::connect_timeout(
        &format!("{IP_B}:22").parse().unwrap(),
        Duration::from_secs(2),
    )
    .expect("B's sshd during the bomb");
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut banner = [0u8; 8];
    conn.read_exact(&mut banner).expect("B's ssh banner");
    assert_eq!(&banner, b"SSH-2.0-");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "B answered in {took:?}");
    lab.ns(
        "lxc-stop",
        &["-k", "-P", &lab.lxc_path(), "-n", &format!("ve{A}")],
    );
    let _ = bomb.kill();
    let _ = bomb.wait();

    for s in [&a, &b] {
        let r = m.call(&Cmd::DestroyEnv(s.id)).await.unwrap();
        assert_eq!(r.code, 0, "destroy_env: {}", r.text());
    }
    assert!(
        !state_dir.join(format!("lxc/ve{A}")).exists(),
        "the slice's folder and disk image are gone"
    );
}
