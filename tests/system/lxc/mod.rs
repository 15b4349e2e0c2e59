//! The agent with the real `lxc` driver, over real mutual TLS: create a slice from the OS
//! template, start it, log in to it with the user's key over its private IP, read its usage,
//! stop and destroy it, and check that nothing is left behind.

use crate::lxc_node;

mod network;

use std::sync::Arc;

use crate::lxc_node::LxcNode;
use crate::system::*;
use slices::agent::Agent;
use slices::domain::{DnsName, Limits, PrivateIp, TemplateName, Username, VeId};
use slices::slave_link::{code, Command, EnvSpec};

const BRIDGE: &str = "slbr-lxct";
const SUBNET: &str = "10.78.0.0/24";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_container_from_create_to_destroy() {
    let Some(_alone) = alone("lxc system test").await else {
        return;
    };
    let mut node: LxcNode = lxc_node::start("lxc1", BRIDGE, SUBNET).await;
    let agent = node.agent.clone();
    let (bridge, work) = (&node.bridge, &node.work);
    let m = &mut node.master;
    for item in agent.check() {
        if ["lxc installed", "bridge", "memory cgroup", "pids cgroup"].contains(&item.what.as_str())
        {
            assert!(
                item.ok,
                "slices-agent check: {}: {}",
                item.what, item.detail
            );
        }
    }

    let (key, public) = keypair(work.path(), "alice-key");
    let spec = EnvSpec {
        id: VeId::new(4101).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse("alice").unwrap(),
        ip: PrivateIp::parse("10.78.0.11").unwrap(),
        hostname: DnsName::parse("alice-slice").unwrap(),
        nameservers: vec!["10.78.0.1".parse().unwrap()],
        search_domain: Some(DnsName::parse("example.test").unwrap()),
        limits: Limits {
            memory_mb: 192,
            memory_limit_mb: 256,
            processes: 300,
            disk_mb: 0,
            cpu_shares: 512,
        },
        keys: vec![public.parse().unwrap()],
    };
    let guard = Cleanup(agent.clone(), spec.id);

    let r = m
        .call(&Command::CreateEnv(Box::new(spec.clone())))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "create_env: {}", r.text());
    let r = m
        .call(&Command::CreateEnv(Box::new(spec.clone())))
        .await
        .unwrap();
    assert_eq!(r.returned[0], "exists");
    let r = m.call(&Command::StartEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "start_env: {}", r.text());
    let status = m.call(&Command::EnvStatus(spec.id)).await.unwrap();
    assert_eq!(status.returned[0]["state"], "running");

    // sshd answers on the private IP, and the user logs in with the key.
    wait_for_port("10.78.0.11:22", 60);
    let mut args: Vec<&str> = SSH_OPTS.to_vec();
    let key_s = key.to_str().unwrap();
    args.extend([
        "-i",
        key_s,
        "alice@10.78.0.11",
        "hostname; id -un; cat /etc/resolv.conf",
    ]);
    let out = sh("ssh", &args);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("alice-slice"), "{out}");
    assert_eq!(lines.next(), Some("alice"), "{out}");
    assert!(
        out.contains("nameserver 10.78.0.1") && out.contains("search example.test"),
        "{out}"
    );

    // Usage, from the container's cgroup, in beancounter shape; the plan is in force.
    let r = m.call(&Command::Usage(Some(spec.id))).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let counters = r.returned[0]["counters"].as_array().unwrap().clone();
    let mem = counters.iter().find(|c| c["resource"] == "memory").unwrap();
    assert!(mem["held"].as_u64().unwrap() > 1024 * 1024, "{mem}");
    assert_eq!(mem["limit"].as_u64().unwrap(), 256 * 1024 * 1024);
    assert_eq!(mem["barrier"].as_u64().unwrap(), 192 * 1024 * 1024);
    let procs = counters
        .iter()
        .find(|c| c["resource"] == "numproc")
        .unwrap();
    assert_eq!(procs["limit"], 300);
    assert!(procs["held"].as_u64().unwrap() >= 1);

    // A new plan applies live.
    let bigger = Limits {
        memory_limit_mb: 384,
        ..spec.limits
    };
    assert_eq!(
        m.call(&Command::SetLimits(spec.id, bigger))
            .await
            .unwrap()
            .code,
        0
    );
    let r = m.call(&Command::Usage(Some(spec.id))).await.unwrap();
    let mem = r.returned[0]["counters"][0].clone();
    assert_eq!(mem["limit"].as_u64().unwrap(), 384 * 1024 * 1024);

    let r = m.call(&Command::StopEnv(spec.id)).await.unwrap();
    assert_eq!(r.returned[0], "stopped", "{}", r.text());
    let r = m.call(&Command::DestroyEnv(spec.id)).await.unwrap();
    assert_eq!(r.returned[0], "destroyed", "{}", r.text());
    let r = m.call(&Command::DestroyEnv(spec.id)).await.unwrap();
    assert_eq!(r.returned[0], "absent");
    let r = m.call(&Command::StartEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, code::NOT_FOUND);

    // Nothing left: no container folder, no cgroup, no veth on the bridge.
    assert!(
        !work.path().join("state/lxc/ve4101").exists(),
        "container folder left"
    );
    for controller in ["memory", "pids", "cpu"] {
        let cg = format!("/sys/fs/cgroup/{controller}/lxc.payload.ve4101");
        assert!(!std::path::Path::new(&cg).exists(), "{cg} left behind");
    }
    assert!(
        bridge.ports().is_empty(),
        "veths left on the bridge: {:?}",
        bridge.ports()
    );
    drop(guard);
}

/// Destroys the container even when the test fails half-way.
struct Cleanup(Arc<Agent>, VeId);

impl Drop for Cleanup {
    fn drop(&mut self) {
        use slices::slave_link::Handler;
        let _ = self.0.handle(Command::DestroyEnv(self.1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_policy_in_a_namespace() {
    let Some(_alone) = alone("lxc network policy").await else {
        return;
    };
    network::the_firewall_opens_only_22_80_443_and_slices_reach_out_by_nat().await;
}
