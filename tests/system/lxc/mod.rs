//! The agent with the real `lxc` driver, over real mutual TLS: create a slice from the OS
//! template, start it, log in to it with the user's key over its private IP, read its usage,
//! stop and destroy it, and check that nothing is left behind.

use crate::lxc_node;

mod archive;
mod isolation;
mod network;
mod nslab;
mod snapshots;

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
        root: true,
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
    let loops = sh("losetup", &["-l", "-n", "-O", "BACK-FILE"]);
    assert!(
        !loops.contains(work.path().to_str().unwrap()),
        "a loop device left on the slice's disk: {loops}"
    );
    drop(guard);
}

/// Destroys the container even when the test fails half-way.
struct Cleanup(Arc<Agent>, VeId);

/// The seed's own messages in the seed's own form against the real LXC driver: sync the
/// templates, create (made from the OS template and started), start, destroy (gone, nothing
/// left in `lxc-ls`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_messages_in_the_seeds_form_on_lxc() {
    let Some(_alone) = alone("the seed's messages on lxc").await else {
        return;
    };
    let mut node: LxcNode = lxc_node::start("lxc1", BRIDGE, SUBNET).await;
    let _guard = Cleanup(node.agent.clone(), VeId::new(4150).unwrap());
    crate::seed::conformance(
        &mut node.master,
        4150,
        "debian-12-ssh_amd64",
        "sam",
        "10.78.0.",
    )
    .await;
    let left = sh("lxc-ls", &["-1"]);
    assert!(!left.lines().any(|l| l.contains("4150")), "{left}");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homes_archive_between_real_slices() {
    let Some(_alone) = alone("lxc archives").await else {
        return;
    };
    archive::a_home_moves_between_slices_by_archive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slices_snapshots_on_real_lxc() {
    let Some(_alone) = alone("lxc snapshots").await else {
        return;
    };
    snapshots::a_slices_disk_goes_back_to_a_snapshot().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_students_root_in_an_unprivileged_slice() {
    let Some(_alone) = alone("lxc isolation").await else {
        return;
    };
    isolation::a_students_root_is_confined().await;
}

/// A slice made by a version before (privileged: an overlay on the extracted template, no id
/// map), with files of its student and of root, becomes unprivileged at its next start and
/// keeps every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_slice_from_before_is_converted_and_keeps_its_files() {
    let Some(_alone) = alone("lxc conversion").await else {
        return;
    };
    let mut node: LxcNode = lxc_node::start("conv1", "slbr-conv", "10.99.0.0/24").await;
    let work = node.work.path().to_path_buf();
    let state = work.join("state");
    let path = state.join("lxc");
    let p = path.to_str().unwrap();
    let dir = path.join("ve4401");
    let lower = state.join("bases/old/rootfs");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::create_dir_all(dir.join("delta0")).unwrap();
    sh(
        "tar",
        &[
            "-xzf",
            template().to_str().unwrap(),
            "-C",
            lower.to_str().unwrap(),
            "--numeric-owner",
        ],
    );
    // The config exactly as the privileged driver wrote it.
    std::fs::write(
        dir.join("config"),
        format!(
            "# Made by slices-agent for container 4401; changes are overwritten.\n\
             lxc.include = /usr/share/lxc/config/common.conf\n\
             lxc.arch = linux64\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.rootfs.path = overlay:{lower}:{upper}\n\
             lxc.uts.name = carol\n\
             lxc.net.0.type = veth\n\
             lxc.net.0.link = {bridge}\n\
             lxc.net.0.flags = up\n\
             lxc.net.0.name = eth0\n\
             lxc.net.0.ipv4.address = 10.99.0.21/24\n\
             lxc.net.0.ipv4.gateway = 10.99.0.1\n\
             lxc.signal.halt = SIGRTMIN+3\n",
            lower = lower.display(),
            upper = dir.join("delta0").display(),
            bridge = node.bridge.name,
        ),
    )
    .unwrap();
    let (_, public) = keypair(&work, "carol-key");
    let spec = EnvSpec {
        id: VeId::new(4401).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse("carol").unwrap(),
        ip: PrivateIp::parse("10.99.0.21").unwrap(),
        hostname: DnsName::parse("carol").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits {
            disk_mb: 1024,
            ..Limits::default()
        },
        keys: vec![public.parse().unwrap()],
        root: true,
    };
    std::fs::write(
        state.join("envs/4401.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let guard = Cleanup(node.agent.clone(), spec.id);
    // Its life before: the student and root wrote files.
    sh("lxc-start", &["-P", p, "-n", "ve4401", "-d"]);
    sh(
        "lxc-wait",
        &["-P", p, "-n", "ve4401", "-s", "RUNNING", "-t", "30"],
    );
    let attach = |args: &[&str]| {
        let mut a = vec!["-P", p, "-n", "ve4401", "--clear-env", "--"];
        a.extend(args);
        sh("lxc-attach", &a)
    };
    attach(&["useradd", "-m", "-s", "/bin/bash", "carol"]);
    attach(&[
        "sh",
        "-c",
        "echo kept > /home/carol/notes.txt && chown carol:carol /home/carol/notes.txt && \
         echo root-file > /etc/slices-kept && mkdir -p /srv/db && chmod 700 /srv/db",
    ]);
    sh("lxc-stop", &["-P", p, "-n", "ve4401", "-k"]);

    // Until it starts again, it is reported privileged (status, node_info, check).
    let unprivileged = |agent: &slices::agent::Agent| {
        agent
            .check()
            .into_iter()
            .find(|i| i.what == "unprivileged slices")
            .unwrap()
    };
    let item = unprivileged(&node.agent);
    assert!(!item.ok && item.detail.contains("ve4401"), "{item:?}");
    let m = &mut node.master;
    let r = m.call(&Command::EnvStatus(spec.id)).await.unwrap();
    assert_eq!(r.returned[0]["privileged"], true, "{}", r.text());
    let r = m.call(&Command::NodeInfo).await.unwrap();
    assert_eq!(r.returned[0]["privileged"], serde_json::json!([4401]));
    let r = m.call(&Command::StartEnv(spec.id)).await.unwrap();
    assert_eq!(r.code, 0, "start_env: {}", r.text());
    let r = m.call(&Command::EnvStatus(spec.id)).await.unwrap();
    assert!(r.returned[0].get("privileged").is_none(), "{}", r.text());
    assert!(unprivileged(&node.agent).ok);
    let config = std::fs::read_to_string(dir.join("config")).unwrap();
    assert!(
        config.contains("lxc.idmap = u 0 1000000000 65536"),
        "{config}"
    );
    assert!(!config.contains("unconfined"), "{config}");
    assert!(!dir.join("delta0").exists(), "the overlay's folder is gone");
    assert!(dir.join("disk.img").exists());
    let pid = sh("lxc-info", &["-P", p, "-n", "ve4401", "-p", "-H"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    assert!(
        status.contains("Uid:\t1000000000\t"),
        "init runs as the slice's own root: {status}"
    );
    assert_eq!(
        attach(&["stat", "-c", "%U %s", "/home/carol/notes.txt"]).trim(),
        "carol 5"
    );
    assert_eq!(attach(&["cat", "/home/carol/notes.txt"]), "kept\n");
    assert_eq!(
        attach(&["stat", "-c", "%U %a", "/etc/slices-kept"]).trim(),
        "root 644"
    );
    assert_eq!(
        attach(&["stat", "-c", "%U %a", "/srv/db"]).trim(),
        "root 700"
    );
    let as_carol = sh(
        "lxc-attach",
        &[
            "-P",
            p,
            "-n",
            "ve4401",
            "--clear-env",
            "-u",
            "1000",
            "-g",
            "1000",
            "--",
            "sudo",
            "-n",
            "id",
            "-u",
        ],
    );
    assert_eq!(as_carol.trim(), "0");
    let r = m.call(&Command::DestroyEnv(spec.id)).await.unwrap();
    assert_eq!(r.returned[0], "destroyed", "{}", r.text());
    drop(guard);
}
