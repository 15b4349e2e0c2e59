//! The agent's configuration (`agent.toml`): its name, where it listens, its certificates,
//! its driver, bridge, subnet and folders.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::netpolicy;
use crate::domain::{NodeName, Subnet};

/// Which driver runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Lxc,
    Vzctl,
    Sim,
}

/// `agent.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This node's name; the master expects it in the agent's certificate.
    pub name: NodeName,
    /// Where the agent listens for the master.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The master's CA certificate, this agent's certificate and key (from `slices node add`).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default = "default_driver")]
    pub driver: DriverKind,
    /// OS templates: `NAME.tar.gz` files.
    pub templates: PathBuf,
    /// The agent's own state (container specs, extracted templates, LXC containers).
    pub state: PathBuf,
    /// The bridge slices are attached to, and its subnet (the host holds the first address).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    pub subnet: Subnet,
    /// Simulator only: how long each operation takes, in milliseconds.
    #[serde(default)]
    pub sim_op_ms: u64,
    /// Longest a command may run, in seconds.
    #[serde(default = "default_timeout")]
    pub command_timeout_secs: u64,
    /// NAT and the firewall for the slices (lxc and vzctl drivers).
    #[serde(default)]
    pub network: netpolicy::NetworkPolicy,
    /// The host ids the slices' id ranges come from (lxc driver): 65536 per slice.
    #[serde(default)]
    pub slice_ids: super::lxc::IdPool,
}

fn default_listen() -> SocketAddr {
    "0.0.0.0:7070".parse().expect("valid")
}
fn default_driver() -> DriverKind {
    DriverKind::Lxc
}
fn default_bridge() -> String {
    "slbr0".into()
}
fn default_timeout() -> u64 {
    300
}

impl AgentConfig {
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: AgentConfig =
            toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        anyhow::ensure!(
            !cfg.bridge.is_empty()
                && cfg.bridge.len() <= 15
                && cfg
                    .bridge
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "bridge: an interface name has at most 15 letters, digits, - or _"
        );
        cfg.slice_ids
            .check()
            .map_err(|e| anyhow::anyhow!("in {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// A sample file, as `slices node add` writes it.
    /// The agent.toml `slices node add` writes: the subnet the master gave the node, its
    /// bridge and uplink.
    pub fn sample(
        name: &NodeName,
        listen: SocketAddr,
        dir: &Path,
        subnet: &Subnet,
        net: &NodeIfaces,
    ) -> String {
        format!(
            "# slices-agent configuration for node {name}\n\
             name = \"{name}\"\n\
             listen = \"{listen}\"\n\
             ca = \"{ca}\"\n\
             cert = \"{cert}\"\n\
             key = \"{key}\"\n\
             # lxc (real containers), vzctl (OpenVZ) or sim (simulated)\n\
             driver = \"lxc\"\n\
             templates = \"/var/lib/slices-agent/templates\"\n\
             state = \"/var/lib/slices-agent\"\n\
             # The slices' bridge, and the subnet the master gave this node (no other node's\n\
             # overlaps it): the bridge holds its first address.\n\
             bridge = \"{bridge}\"\n\
             subnet = \"{subnet}\"\n\
             \n\
             [network]\n\
             # The slices leave by NAT through this interface (empty: no NAT).\n\
             uplink = \"{uplink}\"\n\
             # Only these TCP ports of the slices are open from outside; the rest is dropped.\n\
             open_ports = [22, 80, 443]\n\
             # Slices reach each other on the open ports only (\"open_ports\") or not at all (\"none\").\n\
             between_slices = \"open_ports\"\n\
             \n\
             # Each slice's root is its own range of 65536 host ids, taken from here (lxc driver).\n\
             # Reserve it for root in /etc/subuid and /etc/subgid: root:1000000000:1073741824\n\
             [slice_ids]\n\
             first = 1000000000\n\
             slices = 16384\n",
            ca = dir.join("ca.pem").display(),
            cert = dir.join("agent.pem").display(),
            key = dir.join("agent.key").display(),
            bridge = net.bridge,
            subnet = subnet,
            uplink = net.uplink,
        )
    }
}

/// A node's interfaces as its enrolment names them (the subnet comes from the master).
#[derive(Debug, Clone)]
pub struct NodeIfaces {
    /// The slices' bridge (an interface name, checked).
    pub bridge: String,
    /// The host's public interface for NAT (checked; empty: no NAT).
    pub uplink: String,
}

impl NodeIfaces {
    /// Checks the interface names (they reach agent.toml and, on the host, command lines).
    pub fn new(bridge: &str, uplink: &str) -> Result<NodeIfaces, String> {
        let bridge = netpolicy::iface(bridge).map_err(|e| format!("bridge: {e}"))?;
        let uplink = if uplink.is_empty() {
            ""
        } else {
            netpolicy::iface(uplink).map_err(|e| format!("uplink: {e}"))?
        };
        Ok(NodeIfaces {
            bridge: bridge.to_string(),
            uplink: uplink.to_string(),
        })
    }
}
