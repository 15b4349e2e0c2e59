//! How long a real LXC slice takes: create_env, start_env, sshd answering, stop, destroy,
//! through the agent over mutual TLS. Prints figures; asserts nothing.
//!   cargo bench --bench lxc_provision   (root, LXC, and the cached OS template)

#[path = "../tests/common/system.rs"]
mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slices::agent::{Agent, AgentConfig, DriverKind};
use slices::domain::{DnsName, Limits, NodeName, PrivateIp, Subnet, TemplateName, Username, VeId};
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{server, AgentClient, Command, EnvSpec, ServerOptions};

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
    let template = system::template();
    let work = tempfile::Builder::new()
        .prefix("slices-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let _bridge = system::Bridge::new("slbr-bench", "10.79.0.1/24");
    let ca = Ca::open_or_create(&work.path().join("ca")).unwrap();
    let node = NodeName::parse("bench").unwrap();
    let id = ca.issue_node(&node).unwrap();
    let templates = work.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::os::unix::fs::symlink(&template, templates.join("debian-12-ssh_amd64.tar.gz")).unwrap();
    let cfg = AgentConfig {
        name: node.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ca: work.path().join("x"),
        cert: work.path().join("x"),
        key: work.path().join("x"),
        driver: DriverKind::Lxc,
        templates,
        state: work.path().join("state"),
        bridge: "slbr-bench".into(),
        subnet: Subnet::parse("10.79.0.0/24").unwrap(),
        sim_op_ms: 0,
        command_timeout_secs: 120,
    };
    let agent = Arc::new(Agent::from_config(cfg).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(server::serve(
        listener,
        pki::server_config(ca.cert_pem(), &id).unwrap(),
        agent,
        ServerOptions::default(),
    ));
    let mut m = AgentClient::connect(
        &address,
        &node,
        ca.client_config().unwrap(),
        Duration::from_secs(180),
    )
    .await
    .unwrap();

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
