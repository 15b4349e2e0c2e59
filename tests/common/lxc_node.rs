//! One slave host for the LXC system test and benchmark: the agent with the real `lxc` driver,
//! its own CA and certificate, state on tmpfs, the cached OS template, a bridge, and the
//! master's connection to it over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use slices::agent::{Agent, AgentConfig, DriverKind};
use slices::domain::{NodeName, Subnet};
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{server, AgentClient, ServerOptions};

use super::system::{template, Bridge};

pub struct LxcNode {
    pub agent: Arc<Agent>,
    /// Where the agent listens (for the master's nodes table).
    pub address: String,
    pub master: AgentClient,
    pub bridge: Bridge,
    /// The agent's folders (on /dev/shm unless started `in` another); removed on drop, after
    /// the bridge.
    pub work: tempfile::TempDir,
}

/// Starts it: `bridge` (at most 15 characters) gets the subnet's first address.
pub async fn start(name: &str, bridge: &str, subnet: &str) -> LxcNode {
    start_with_ca(name, bridge, subnet, None).await
}

/// Starts it with its certificate from `ca` (the master's), or from a CA of its own.
pub async fn start_with_ca(name: &str, bridge: &str, subnet: &str, ca: Option<&Ca>) -> LxcNode {
    start_in(name, bridge, subnet, ca, std::path::Path::new("/dev/shm")).await
}

/// Starts it with its folders (and so the slices' disk images) under `parent`.
pub async fn start_in(
    name: &str,
    bridge: &str,
    subnet: &str,
    ca: Option<&Ca>,
    parent: &std::path::Path,
) -> LxcNode {
    let subnet = Subnet::parse(subnet).unwrap();
    let work = tempfile::Builder::new()
        .prefix("slices-lxc-")
        .tempdir_in(parent)
        .unwrap();
    let bridge = Bridge::new(bridge, &format!("{}/{}", subnet.gateway(), subnet.prefix()));
    let own;
    let ca = match ca {
        Some(ca) => ca,
        None => {
            own = Ca::open_or_create(&work.path().join("ca")).unwrap();
            &own
        }
    };
    let node = NodeName::parse(name).unwrap();
    let id = ca.issue_node(&node).unwrap();
    let templates = work.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::os::unix::fs::symlink(template(), templates.join("debian-12-ssh_amd64.tar.gz")).unwrap();
    let unused = work.path().join("unused"); // the agent runs in-process: no files for TLS
    let cfg = AgentConfig {
        name: node.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ca: unused.clone(),
        cert: unused.clone(),
        key: unused,
        driver: DriverKind::Lxc,
        templates,
        state: work.path().join("state"),
        bridge: bridge.name.clone(),
        subnet,
        sim_op_ms: 0,
        command_timeout_secs: 120,
        network: slices::agent::netpolicy::NetworkPolicy::off(),
        slice_ids: Default::default(),
    };
    let agent = Arc::new(Agent::from_config(cfg).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tls = pki::server_config(ca.cert_pem(), &id).unwrap();
    tokio::spawn(server::serve(
        listener,
        tls,
        agent.clone(),
        ServerOptions::default(),
    ));
    let master = AgentClient::connect(
        &address,
        &node,
        ca.client_config().unwrap(),
        Duration::from_secs(180),
    )
    .await
    .unwrap();
    LxcNode {
        agent,
        address,
        master,
        bridge,
        work,
    }
}

impl Drop for LxcNode {
    /// Destroys every container the agent holds, also when a test fails half-way (LXC
    /// containers outlive the process that started them otherwise).
    fn drop(&mut self) {
        use slices::slave_link::{Command, Handler};
        let listed = self.agent.handle(Command::ListEnvs);
        for env in listed.returned {
            if let Some(id) = env
                .get("id")
                .and_then(|v| v.as_u64())
                .and_then(|v| slices::domain::VeId::new(v).ok())
            {
                let _ = self.agent.handle(Command::DestroyEnv(id));
            }
        }
    }
}
