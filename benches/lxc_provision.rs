//! How long a real LXC slice takes: create_env, start_env, sshd answering, stop, destroy,
//! through the agent over mutual TLS. Prints figures; asserts nothing.
//!   cargo bench --bench lxc_provision   (root, LXC, and the cached OS template)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{lxc_node, system};

use std::time::{Duration, Instant};

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

async fn run() {
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut node = lxc_node::start("bench", "slbr-bench", "10.79.0.0/24").await;
    let m = &mut node.master;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("LXC slice life through the agent, {rounds} rounds (first create also extracts the template):");
    println!("round  create_ms  start_ms  sshd_ms  stop_ms  destroy_ms");
    for round in 0..rounds {
        let spec = EnvSpec {
            id: VeId::new(5000 + round as u64).unwrap(),
            template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
            username: Username::parse("bench").unwrap(),
            ip: PrivateIp::parse(&format!("10.79.0.{}", 10 + round)).unwrap(),
            hostname: DnsName::parse("bench").unwrap(),
            nameservers: vec![],
            search_domain: None,
            limits: Limits::default(),
            keys: vec![],
            root: true,
        };
        let t = Instant::now();
        let r = m
            .call(&Command::CreateEnv(Box::new(spec.clone())))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
        let create = t.elapsed();
        let t = Instant::now();
        let r = m.call(&Command::StartEnv(spec.id)).await.unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
        let start = t.elapsed();
        let sshd = system::wait_for_port(&format!("{}:22", spec.ip), 60) + start;
        let t = Instant::now();
        m.call(&Command::StopEnv(spec.id)).await.unwrap();
        let stop = t.elapsed();
        let t = Instant::now();
        m.call(&Command::DestroyEnv(spec.id)).await.unwrap();
        let destroy = t.elapsed();
        println!(
            "{round:>5}  {:>9.0}  {:>8.0}  {:>7.0}  {:>7.0}  {:>10.0}",
            ms(create),
            ms(start),
            ms(sshd),
            ms(stop),
            ms(destroy)
        );
    }
}
