//! A slave host in a network namespace the test makes (the host's own tables are never
//! touched): the real `slices-agent` binary runs in it with the lxc driver and its network
//! policy; the test process plays the master and "the outside world" across a veth pair:
//!
//!     test (host ns) OUTSIDE.1 ── veth ── OUTSIDE.2 eth0 [ns: agent, bridge SUBNET.1, slices]

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output};
use std::time::Duration;

use slices::domain::NodeName;
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::AgentClient;

use crate::system::*;

/// The names and addresses of one lab (each test its own, so that none meets another's).
pub struct Names {
    pub ns: &'static str,
    /// The host's end of the veth into the namespace.
    pub host_if: &'static str,
    pub bridge: &'static str,
    /// The /30 between the test and the node: the test holds `.1`, the node `.2`.
    pub outside: &'static str,
    /// The slices' subnet (a /24): the bridge holds `.1`.
    pub subnet: &'static str,
}

impl Names {
    fn outside_ip(&self, last: u8) -> String {
        let base = self.outside.rsplit_once('.').unwrap().0;
        format!("{base}.{last}")
    }

    fn subnet_ip(&self, last: u8) -> String {
        let base = self.subnet.rsplit_once('.').unwrap().0;
        format!("{base}.{last}")
    }
}

/// Everything the test made, removed on drop (also when it fails).
pub struct NsLab {
    pub names: Names,
    agent: Option<Child>,
    pub work: tempfile::TempDir,
    pub ca: Ca,
    pub node: NodeName,
}

impl NsLab {
    /// Makes the namespace, its uplink and bridge, and the agent's files; `network` is the
    /// body of agent.toml's `[network]` table. The agent is not started yet.
    pub fn new(names: Names, node: &str, network: &str) -> NsLab {
        quiet("ip", &["netns", "del", names.ns]);
        quiet("ip", &["link", "del", names.host_if]);
        sh("ip", &["netns", "add", names.ns]);
        let work = tempfile::Builder::new()
            .prefix("slices-ns-")
            .tempdir_in("/dev/shm")
            .unwrap();
        let ca = Ca::open_or_create(&work.path().join("ca")).unwrap();
        let node = NodeName::parse(node).unwrap();
        let lab = NsLab {
            names,
            agent: None,
            work,
            ca,
            node,
        };
        let n = &lab.names;
        let peer = format!("{}-p", n.host_if);
        sh(
            "ip",
            &[
                "link", "add", n.host_if, "type", "veth", "peer", "name", &peer,
            ],
        );
        sh("ip", &["link", "set", &peer, "netns", n.ns]);
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", n.outside_ip(1)),
                "dev",
                n.host_if,
            ],
        );
        sh("ip", &["link", "set", n.host_if, "up"]);
        sh("ip", &["route", "add", n.subnet, "via", &n.outside_ip(2)]);
        lab.ns("ip", &["link", "set", "lo", "up"]);
        lab.ns("ip", &["link", "set", &peer, "name", "eth0"]);
        lab.ns(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", n.outside_ip(2)),
                "dev",
                "eth0",
            ],
        );
        lab.ns("ip", &["link", "set", "eth0", "up"]);
        lab.ns("ip", &["route", "add", "default", "via", &n.outside_ip(1)]);
        lab.ns("ip", &["link", "add", n.bridge, "type", "bridge"]);
        lab.ns(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", n.subnet_ip(1)),
                "dev",
                n.bridge,
            ],
        );
        lab.ns("ip", &["link", "set", n.bridge, "up"]);

        // The agent's bundle, its templates and configuration, as `slices node add` makes them.
        let w = lab.work.path().to_path_buf();
        pki::write_bundle(
            &w.join("bundle"),
            lab.ca.cert_pem(),
            &lab.ca.issue_node(&lab.node).unwrap(),
        )
        .unwrap();
        std::fs::create_dir_all(w.join("templates")).unwrap();
        std::os::unix::fs::symlink(template(), w.join("templates/debian-12-ssh_amd64.tar.gz"))
            .unwrap();
        let b = w.join("bundle");
        std::fs::write(
            w.join("agent.toml"),
            format!(
                "name = \"{node}\"\nlisten = \"{listen}\"\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
                 driver = \"lxc\"\ntemplates = \"{t}\"\nstate = \"{s}\"\nbridge = \"{bridge}\"\n\
                 subnet = \"{subnet}\"\ncommand_timeout_secs = 120\n\n[network]\n{network}\n",
                node = lab.node,
                listen = lab.agent_address(),
                ca = b.join("ca.pem").display(),
                cert = b.join("agent.pem").display(),
                key = b.join("agent.key").display(),
                t = w.join("templates").display(),
                s = w.join("state").display(),
                bridge = n.bridge,
                subnet = n.subnet,
            ),
        )
        .unwrap();
        lab
    }

    /// Where the agent listens: the node's outside address.
    pub fn agent_address(&self) -> String {
        format!("{}:7070", self.names.outside_ip(2))
    }

    /// A command in the namespace.
    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        crate::netns::in_ns(self.names.ns, program, args)
    }

    /// Runs it in the namespace; it must succeed. Its standard output.
    pub fn ns(&self, program: &str, args: &[&str]) -> String {
        let out = self.cmd(program, args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}",
            self.names.ns,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn config(&self) -> String {
        self.work
            .path()
            .join("agent.toml")
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn lxc_path(&self) -> String {
        self.work
            .path()
            .join("state/lxc")
            .to_str()
            .unwrap()
            .to_string()
    }

    /// `lxc-attach` into container `ve{id}` in the namespace, as root or as `uid`; whatever
    /// it exits with.
    pub fn attach(&self, id: u32, uid: Option<u32>, args: &[&str]) -> Output {
        let name = format!("ve{id}");
        let path = self.lxc_path();
        let ids = uid.map(|u| u.to_string());
        let mut a: Vec<&str> = vec!["-P", &path, "-n", &name, "--clear-env"];
        if let Some(u) = &ids {
            a.extend(["-u", u, "-g", u]);
        }
        a.push("--");
        a.extend(args);
        self.cmd("lxc-attach", &a).output().unwrap()
    }

    /// Whether container `ve{id}` reaches `addr` (`IP/PORT`) over TCP, within 4 s.
    pub fn reaches(&self, id: u32, addr: &str) -> bool {
        let probe = format!(
            "if timeout 4 bash -c 'exec 3<>/dev/tcp/{addr}' 2>/dev/null; then echo up; else echo down; fi"
        );
        let out = self.attach(id, None, &["bash", "-c", &probe]);
        String::from_utf8_lossy(&out.stdout).trim() == "up"
    }

    pub fn start_agent(&mut self) {
        let config = self.config();
        let child = self
            .cmd(
                env!("CARGO_BIN_EXE_slices-agent"),
                &["run", "--config", &config],
            )
            .spawn()
            .unwrap();
        self.agent = Some(child);
        wait_for_port(&self.agent_address(), 20);
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The master's connection to the agent.
    pub async fn master(&self) -> AgentClient {
        AgentClient::connect(
            &self.agent_address(),
            &self.node,
            self.ca.client_config().unwrap(),
            Duration::from_secs(180),
        )
        .await
        .unwrap()
    }

    /// The containers the agent's folder holds (`ve4201`, ...).
    fn containers(&self) -> Vec<String> {
        std::fs::read_dir(self.lxc_path())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("ve"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NsLab {
    fn drop(&mut self) {
        // Containers first (their veths live in the namespace), then the namespace.
        let path = self.lxc_path();
        let names = self.containers();
        for name in &names {
            let _ = self
                .cmd("lxc-stop", &["-k", "-P", &path, "-n", name])
                .output();
            let rootfs = format!("{path}/{name}/rootfs");
            quiet("umount", &[&rootfs]);
            let _ = self.cmd("lxc-destroy", &["-P", &path, "-n", name]).output();
        }
        self.stop_agent();
        // The disks' loop devices (the agent attached them in a mount namespace of its own).
        detach_loops_under(self.work.path());
        quiet("ip", &["route", "del", self.names.subnet]);
        quiet("ip", &["link", "del", self.names.host_if]);
        quiet("ip", &["netns", "del", self.names.ns]);
        for name in &names {
            for dir in [format!("lxc.payload.{name}"), format!("lxc.monitor.{name}")] {
                quiet("rmdir", &[&format!("/sys/fs/cgroup/{dir}")]);
            }
        }
        quiet("rmdir", &["/sys/fs/cgroup/lxc.pivot"]);
    }
}

pub fn connects(addr: &str, secs: u64) -> bool {
    let sa: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&sa, Duration::from_secs(secs)).is_ok()
}
