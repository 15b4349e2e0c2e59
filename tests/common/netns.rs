//! Separate "hosts" on this machine: network namespaces joined to the host by a veth pair.
//! Only addresses the tests make are ever used, and the host's own tables are never touched
//! (rules go inside the namespaces).

use std::process::Command;

use super::system::{quiet, sh};

/// A command in namespace `ns`, as a process on that host sees it: its network, and a /sys
/// that shows its interfaces (LXC looks for its bridge there) with the cgroup file system
/// still in place. (`ip netns exec` remounts /sys and hides the cgroups.) `--` twice: nsenter
/// and unshare must not take the program's options for theirs.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "unshare", "-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mkdir -p /run/slices-ns-cg && mount --rbind /sys/fs/cgroup /run/slices-ns-cg && \
             mount -t sysfs sysfs /sys && mount --move /run/slices-ns-cg /sys/fs/cgroup && exec \"$@\"",
        )
        .arg("sh")
        .arg(program)
        .args(args);
    c
}

/// IPv4 forwarding on this host, switched on for as long as the value lives and put back as it
/// was found when it drops (also when the test fails). The multi-host tests route between
/// their namespaces through this host; a fresh machine has forwarding off.
pub struct HostForwarding {
    was: String,
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl HostForwarding {
    pub fn on() -> HostForwarding {
        let was = std::fs::read_to_string(IP_FORWARD)
            .expect("read net.ipv4.ip_forward")
            .trim()
            .to_string();
        if was != "1" {
            std::fs::write(IP_FORWARD, "1").expect("switch on net.ipv4.ip_forward");
        }
        HostForwarding { was }
    }
}

impl Drop for HostForwarding {
    fn drop(&mut self) {
        if self.was != "1" {
            let _ = std::fs::write(IP_FORWARD, &self.was);
        }
    }
}

/// A slave host: namespace `name`, its `eth0` at `10.{net}.{n}.2/30` joined to the host's
/// `host_if` at `.1`, a default route out through the host, and a bridge holding the first
/// address of `subnet` (the host routes that subnet to it). Removed on drop.
pub struct NsHost {
    pub name: String,
    pub host_if: String,
    /// Its address, as the host reaches it.
    pub addr: String,
    pub subnet: String,
}

impl NsHost {
    /// `bridge`: (name, its address/prefix, the subnet the host routes to it), for a slave host.
    pub fn new(
        name: &str,
        host_if: &str,
        link: &str,
        bridge: Option<(&str, &str, &str)>,
    ) -> NsHost {
        let subnet = bridge.map(|b| b.2).unwrap_or("");
        // `link` is the /30's first three octets, such as "10.102.1".
        quiet("ip", &["netns", "del", name]);
        quiet("ip", &["link", "del", host_if]);
        if !subnet.is_empty() {
            quiet("ip", &["route", "del", subnet]);
        }
        sh("ip", &["netns", "add", name]);
        let host = NsHost {
            name: name.into(),
            host_if: host_if.into(),
            addr: format!("{link}.2"),
            subnet: subnet.into(),
        };
        let peer = format!("{host_if}p");
        sh(
            "ip",
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", &peer,
            ],
        );
        sh("ip", &["link", "set", &peer, "netns", name]);
        sh(
            "ip",
            &["addr", "add", &format!("{link}.1/30"), "dev", host_if],
        );
        sh("ip", &["link", "set", host_if, "up"]);
        host.run("ip", &["link", "set", "lo", "up"]);
        host.run("ip", &["link", "set", &peer, "name", "eth0"]);
        host.run(
            "ip",
            &["addr", "add", &format!("{link}.2/30"), "dev", "eth0"],
        );
        host.run("ip", &["link", "set", "eth0", "up"]);
        host.run(
            "ip",
            &["route", "add", "default", "via", &format!("{link}.1")],
        );
        if let Some((bridge, cidr, subnet)) = bridge {
            host.run("ip", &["link", "add", bridge, "type", "bridge"]);
            host.run("ip", &["addr", "add", cidr, "dev", bridge]);
            host.run("ip", &["link", "set", bridge, "up"]);
            sh("ip", &["route", "add", subnet, "via", &host.addr]);
        }
        host
    }

    pub fn cmd(&self, program: &str, args: &[&str]) -> Command {
        in_ns(&self.name, program, args)
    }

    /// Runs a command in the namespace; panics with its output when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.cmd(program, args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NsHost {
    fn drop(&mut self) {
        if !self.subnet.is_empty() {
            quiet("ip", &["route", "del", &self.subnet]);
        }
        quiet("ip", &["link", "del", &self.host_if]);
        quiet("ip", &["netns", "del", &self.name]);
    }
}
