//! The slave host's network policy, for real, inside a network namespace this test makes (the
//! host's own tables are never touched; the test checks that too). The real `slices-agent`
//! binary runs in the namespace with the lxc driver; the test process plays the master and
//! "the outside world" across a veth pair:
//!
//!     test (host ns) 10.95.0.1 ── veth ── 10.95.0.2 eth0 [ns slnet-np: agent, bridge
//!                                                        slbr-np 10.96.0.1, slice 10.96.0.11]
//!
//! A real LXC slice: ports 22 and 80 answer from outside, 8080 is dropped, and the slice
//! reaches the outside by NAT (its connections arrive from 10.95.0.2). Restarting the agent
//! re-applies the rules without adding any.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use slices::domain::{DnsName, Limits, PrivateIp, TemplateName, Username, VeId};
use slices::slave_link::{Command as Cmd, EnvSpec};

use super::nslab::{connects, Names, NsLab};

use crate::system::*;

const SLICE_IP: &str = "10.96.0.11";

pub async fn the_firewall_opens_only_22_80_443_and_slices_reach_out_by_nat() {
    let host_rules = || {
        format!(
            "{}{}",
            sh("iptables", &["-S"]),
            sh("iptables", &["-t", "nat", "-S"])
        )
    };
    let host_rules_before = host_rules();
    let mut lab = NsLab::new(
        Names {
            ns: "slnet-np",
            host_if: "slv-np",
            bridge: "slbr-np",
            outside: "10.95.0.0",
            subnet: "10.96.0.0/24",
        },
        "np1",
        "uplink = \"eth0\"\nreassert_secs = 2",
    );
    let w = lab.work.path().to_path_buf();
    // What the host has before the agent ever runs (its tables as iptables-save writes them,
    // counters aside; forwarding): `slices-agent uninstall` must leave exactly this.
    // The host has rules of its own, which the agent must leave alone.
    lab.ns(
        "iptables",
        &["-A", "FORWARD", "-s", "192.0.2.7", "-j", "ACCEPT"],
    );
    lab.ns(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "192.0.2.7",
            "-j",
            "RETURN",
        ],
    );
    let saved = |lab: &NsLab| -> String {
        lab.ns("iptables-save", &[])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.find(" [") {
                Some(i) if l.starts_with(':') => l[..i].to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let tables_before = saved(&lab);
    let forwarding_before = lab.ns("sysctl", &["-n", "net.ipv4.ip_forward"]);
    lab.start_agent();

    // The rules are in the namespace, once each.
    let rules = lab.ns("iptables", &["-S"]);
    assert!(
        rules.contains("-A FORWARD -o slbr-np -j SL-slbr-np-IN"),
        "{rules}"
    );
    assert!(
        rules.contains("-A SL-slbr-np-IN -p tcp -m multiport --dports 22,80,443 -j ACCEPT"),
        "{rules}"
    );
    let nat = lab.ns("iptables", &["-t", "nat", "-S"]);
    assert!(
        nat.contains("-A SL-slbr-np-NAT -s 10.96.0.0/24 ! -d 10.96.0.0/24 -o eth0 -j MASQUERADE"),
        "{nat}"
    );

    let mut m = lab.master().await;
    let (_, public) = keypair(&w, "np-key");
    let spec = EnvSpec {
        id: VeId::new(4201).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse("nora").unwrap(),
        ip: PrivateIp::parse(SLICE_IP).unwrap(),
        hostname: DnsName::parse("nora").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits::default(),
        keys: vec![public.parse().unwrap()],
        root: true,
    };
    let r = m
        .call(&Cmd::CreateEnv(Box::new(spec.clone())))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "create_env: {}", r.text());
    let r = m.call(&Cmd::StartEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "start_env: {}", r.text());

    // sshd (22) answers from outside; a web server on 80 does; the same on 8080 does not.
    wait_for_port(&format!("{SLICE_IP}:22"), 60);
    let lxc = lab.lxc_path();
    let in_slice = |args: &[&str]| {
        let out = lab.attach(4201, None, args);
        assert!(
            out.status.success(),
            "{args:?} in the slice: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let serve = |port: u16| {
        let script = format!(
            "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => {port}, Listen => 5, ReuseAddr => 1) or die $!; \
             while (my $c = $s->accept) {{ print $c \"HTTP/1.0 200 OK\\r\\n\\r\\nport {port}\\n\"; close $c }}"
        );
        in_slice(&[
            "sh",
            "-c",
            "nohup perl -e \"$1\" >/dev/null 2>&1 &",
            "sh",
            &script,
        ]);
    };
    serve(80);
    serve(8080);
    // Inside the slice both listen (so a refusal from outside is the firewall's).
    let start = Instant::now();
    loop {
        if lab.reaches(4201, "127.0.0.1/8080") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the test server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    while !connects(&format!("{SLICE_IP}:80"), 2) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "port 80 is not open from outside"
        );
    }
    assert!(
        !connects(&format!("{SLICE_IP}:8080"), 2),
        "port 8080 must be dropped"
    );

    // Out by NAT: the slice's connection to the outside arrives from the host's address.
    let listener = TcpListener::bind("10.95.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    in_slice(&[
        "bash",
        "-c",
        &format!("echo hello-from-the-slice > /dev/tcp/10.95.0.1/{port}"),
    ]);
    listener.set_nonblocking(false).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello-from-the-slice\n");
    assert_eq!(
        peer.ip().to_string(),
        "10.95.0.2",
        "masqueraded behind the host"
    );

    // A slice never reaches its node itself: not the agent's port (listening on the node's
    // own address), not any other; the master still does, from outside.
    assert!(
        !lab.reaches(4201, "10.95.0.2/7070"),
        "a slice reached the agent's port"
    );
    assert!(
        connects("10.95.0.2:7070", 5),
        "the master still reaches the agent"
    );
    let rules = lab.ns("iptables", &["-S"]);
    assert!(
        rules.contains("-A INPUT -i slbr-np -j SL-slbr-np-HOST"),
        "{rules}"
    );

    // A rule taken away (a firewall reload, a hand): 8080 opens, and the agent puts the rule
    // back within its re-assert interval (2 s here), closing it again.
    lab.ns(
        "iptables",
        &["-D", "FORWARD", "-o", "slbr-np", "-j", "SL-slbr-np-IN"],
    );
    let opened = connects(&format!("{SLICE_IP}:8080"), 1);
    let start = Instant::now();
    while connects(&format!("{SLICE_IP}:8080"), 1) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the agent did not put its rule back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        opened,
        "taking the rule away opened 8080 (else this proves nothing)"
    );
    assert!(lab
        .ns("iptables", &["-S", "FORWARD"])
        .contains("-A FORWARD -o slbr-np -j SL-slbr-np-IN"));

    // The agent stopped, its container stopped behind its back (as a host reboot does): the
    // agent starts it again when it starts, because the master last asked it to run.
    lab.stop_agent();
    lab.ns("lxc-stop", &["-k", "-P", &lxc, "-n", "ve4201"]);
    lab.start_agent();
    let mut m = lab.master().await;
    let start = Instant::now();
    loop {
        let r = m.call(&Cmd::EnvStatus(spec.id)).await.unwrap();
        assert_eq!(r.returned[0]["wanted"], "running", "{}", r.text());
        if r.returned[0]["state"] == "running" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not brought back: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_port(&format!("{SLICE_IP}:22"), 60);
    // Restarting the agent applied the policy again and added nothing; check says in place.
    let cfg = lab.config();
    let cfg = cfg.as_str();
    let rules = lab.ns("iptables", &["-S"]);
    assert_eq!(
        rules
            .matches("-A FORWARD -o slbr-np -j SL-slbr-np-IN")
            .count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules.matches("-A SL-slbr-np-IN -j DROP").count(),
        1,
        "{rules}"
    );
    let check = lab
        .cmd(
            env!("CARGO_BIN_EXE_slices-agent"),
            &["check", "--config", cfg],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("[ ok ] network policy: in place"), "{text}");
    assert!(text.contains("[ ok ] IPv4 forwarding: on"), "{text}");
    let r = m.call(&Cmd::DestroyEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "destroy_env: {}", r.text());

    // Uninstalled, the host is as it was before the agent: tables and forwarding.
    lab.stop_agent();
    // Drift is reported (the agent, stopped, does not put it back): a rule added by hand.
    lab.ns(
        "iptables",
        &[
            "-A",
            "SL-slbr-np-IN",
            "-p",
            "tcp",
            "--dport",
            "8080",
            "-j",
            "ACCEPT",
        ],
    );
    let check = lab
        .cmd(
            env!("CARGO_BIN_EXE_slices-agent"),
            &["check", "--config", cfg],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("[MISS] network policy: 1 extra rule(s)"),
        "{text}"
    );

    let out = lab
        .cmd(
            env!("CARGO_BIN_EXE_slices-agent"),
            &["uninstall", "--config", cfg],
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("removed the chain -t filter SL-slbr-np-IN"),
        "{said}"
    );
    assert!(said.contains("no containers were left"), "{said}");
    assert_eq!(
        saved(&lab),
        tables_before,
        "iptables-save as before the agent"
    );
    assert_eq!(
        lab.ns("sysctl", &["-n", "net.ipv4.ip_forward"]),
        forwarding_before,
        "forwarding as it was found"
    );
    drop(lab);
    assert_eq!(
        host_rules(),
        host_rules_before,
        "the host's own tables are untouched"
    );
}
