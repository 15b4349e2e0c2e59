use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slices::agent::{sim::Sim, Agent, AgentConfig, DriverKind};
use slices::domain::{DnsName, Limits, NodeName, PrivateIp, Subnet, TemplateName, Username, VeId};
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{server, AgentClient, EnvSpec, ServerOptions};

pub const TEMPLATE: &str = "debian-12-ssh_amd64";

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub node: NodeName,
    pub address: String,
    pub state: PathBuf,
}

pub fn config(dir: &std::path::Path, name: &NodeName) -> AgentConfig {
    AgentConfig {
        name: name.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ca: dir.join("bundle/ca.pem"),
        cert: dir.join("bundle/agent.pem"),
        key: dir.join("bundle/agent.key"),
        driver: DriverKind::Sim,
        templates: dir.join("templates"),
        state: dir.join("state"),
        bridge: "slbr-test".into(),
        subnet: Subnet::parse("10.77.0.0/24").unwrap(),
        sim_op_ms: 0,
        command_timeout_secs: 5,
        network: slices::agent::netpolicy::NetworkPolicy::off(),
        slice_ids: Default::default(),
    }
}

/// A CA, a node certificate and a running agent with the simulator.
pub async fn start_agent() -> Lab {
    start_agent_with(ServerOptions {
        max_line: slices::slave_link::frame::MAX_LINE,
        command_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..ServerOptions::default()
    })
    .await
}

pub async fn start_agent_with(opts: ServerOptions) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::open_or_create(&dir.path().join("ca")).unwrap();
    let node = NodeName::parse("node1").unwrap();
    let id = ca.issue_node(&node).unwrap();
    pki::write_bundle(&dir.path().join("bundle"), ca.cert_pem(), &id).unwrap();
    let cfg = config(dir.path(), &node);
    std::fs::create_dir_all(&cfg.templates).unwrap();
    std::fs::write(
        cfg.templates.join(format!("{TEMPLATE}.tar.gz")),
        b"not really a tarball",
    )
    .unwrap();
    let tls = pki::server_config(ca.cert_pem(), &id).unwrap();
    let state = cfg.state.clone();
    let driver = Box::new(Sim::new(&cfg.state, Duration::ZERO).unwrap());
    let agent = Arc::new(Agent::new(cfg, driver).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(server::serve(listener, tls, agent, opts));
    Lab {
        dir,
        ca,
        node,
        address,
        state,
    }
}

impl Lab {
    pub async fn master(&self) -> AgentClient {
        AgentClient::connect(
            &self.address,
            &self.node,
            self.ca.client_config().unwrap(),
            Duration::from_secs(5),
        )
        .await
        .expect("the master connects")
    }

    /// Containers the simulator holds on disk.
    pub fn sim_files(&self) -> usize {
        std::fs::read_dir(self.state.join("sim"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

pub const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m alice@laptop";

pub fn spec(id: u32, ip: &str) -> EnvSpec {
    EnvSpec {
        id: VeId::new(id as u64).unwrap(),
        template: TemplateName::parse(TEMPLATE).unwrap(),
        username: Username::parse("alice").unwrap(),
        ip: PrivateIp::parse(ip).unwrap(),
        hostname: DnsName::parse("alice").unwrap(),
        nameservers: vec!["10.77.0.1".parse().unwrap()],
        search_domain: Some(DnsName::parse("example.edu").unwrap()),
        limits: Limits::default(),
        keys: vec![KEY.parse().unwrap()],
        root: true,
    }
}
