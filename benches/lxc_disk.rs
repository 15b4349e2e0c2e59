//! Writing inside a slice's own disk (an ext4 image on a loop device) against writing to the
//! host's file system that holds the image: `dd` of 1 GiB with `conv=fdatasync`, alternated.
//! Prints figures; asserts nothing.
//!   cargo bench --bench lxc_disk   (root, LXC, the cached OS template; state under /var/tmp)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{lxc_node, system};

use slices::domain::{DnsName, Limits, PrivateIp, TemplateName, Username, VeId};
use slices::slave_link::{Command, EnvSpec};

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// The seconds `dd` says it took ("..., 1.49 s, 720 MB/s").
fn dd_seconds(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.contains(" copied, "))
        .unwrap_or_else(|| panic!("dd said: {stderr}"));
    let after = line.split(" copied, ").nth(1).unwrap();
    after.split(" s,").next().unwrap().trim().parse().unwrap()
}

fn dd(program: &str, args: &[&str]) -> f64 {
    // What the last round left dirty is written first, so that no round pays for another.
    system::sh("sync", &[]);
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dd_seconds(&String::from_utf8_lossy(&out.stderr))
}

async fn run() {
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let parent = std::path::Path::new("/var/tmp");
    let mut node = lxc_node::start_in("disk", "slbr-disk", "10.79.1.0/24", None, parent).await;
    let spec = EnvSpec {
        id: VeId::new(5100).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse("bench").unwrap(),
        ip: PrivateIp::parse("10.79.1.10").unwrap(),
        hostname: DnsName::parse("bench").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits {
            disk_mb: 2048,
            ..Limits::default()
        },
        keys: vec![],
        root: true,
    };
    let m = &mut node.master;
    let r = m
        .call(&Command::CreateEnv(Box::new(spec.clone())))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let r = m.call(&Command::StartEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    system::wait_for_port("10.79.1.10:22", 60);
    let host_file = node.work.path().join("host-dd");
    let host_of = format!("of={}", host_file.display());
    let lxc = node.work.path().join("state/lxc");
    let lxc = lxc.to_str().unwrap();
    let mb = 1024.0;
    println!(
        "dd 1 GiB, conv=fdatasync, on {} (the slice's image is on it too):",
        parent.display()
    );
    println!("round  host_MB/s  slice_MB/s  slice/host");
    for round in 0..rounds {
        let host = dd(
            "dd",
            &[
                "if=/dev/zero",
                &host_of,
                "bs=1M",
                "count=1024",
                "conv=fdatasync",
            ],
        );
        let _ = std::fs::remove_file(&host_file);
        let slice = dd(
            "lxc-attach",
            &[
                "-P",
                lxc,
                "-n",
                "ve5100",
                "--clear-env",
                "--",
                "dd",
                "if=/dev/zero",
                "of=/var/tmp/dd",
                "bs=1M",
                "count=1024",
                "conv=fdatasync",
            ],
        );
        system::sh(
            "lxc-attach",
            &[
                "-P",
                lxc,
                "-n",
                "ve5100",
                "--clear-env",
                "--",
                "rm",
                "-f",
                "/var/tmp/dd",
            ],
        );
        println!(
            "{round:>5}  {:>9.0}  {:>10.0}  {:>10.2}",
            mb / host,
            mb / slice,
            host / slice
        );
    }
    let r = m.call(&Command::DestroyEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
}
