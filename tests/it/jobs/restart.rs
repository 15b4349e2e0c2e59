//! The real master process, killed in the middle of provisioning and started again.

use std::process::Command;
use std::time::Duration;

use slices::domain::Role;
use slices::slices::State;

use crate::fleet::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_provision_resumes_and_does_nothing_twice() {
    // Each agent operation takes 1.5 s, so the kill lands while start_env is on its way.
    let f = fleet(1, |_| "10.84.0.0/24".into(), 1500).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);

    let mut master = f.start_master(&[]);
    let start = std::time::Instant::now();
    while f.slice(id).step != "starting" {
        assert!(
            start.elapsed().as_secs() < 30,
            "provisioning did not reach start: {:?}",
            f.slice(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    master.0.kill().unwrap(); // SIGKILL: no chance to tidy up
    master.0.wait().unwrap();
    let mid = f.slice(id);
    assert_eq!(mid.state, State::Provisioning, "killed mid-way");
    assert_eq!(
        f.count("SELECT count(*) FROM jobs WHERE state = 'running' AND kind = 'provision'"),
        1
    );

    let _master = f.start_master(&[]);
    let s = f.wait_for(id, State::Running, 30).await;
    assert_eq!(
        (s.veid, s.ip.clone()),
        (mid.veid, mid.ip.clone()),
        "same id and address after the restart"
    );
    assert_eq!(f.nodes[0].containers(), 1, "one container");
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM agent_log WHERE slice_id = {id} AND command = 'create_env'"
        )),
        1,
        "the container was created once"
    );
    assert_eq!(
        f.count("SELECT count(*) FROM slices WHERE ip IS NOT NULL"),
        1
    );
    f.wait_count(
        "SELECT count(*) FROM jobs WHERE kind = 'provision' AND state = 'succeeded'",
        1,
        10,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_master_on_the_same_data_is_refused() {
    let f = fleet(0, |_| String::new(), 0).await;
    let _first = f.start_master(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(env!("CARGO_BIN_EXE_slices"))
        .args([
            "serve",
            "--driver",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(&f.ctx.config.data)
        .env_remove("SLICES_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another slices master is running"));
}
