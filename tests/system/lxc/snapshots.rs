//! Snapshots of a real slice's disk: taken while it runs (its file system frozen for the
//! copy) and while stopped, restored (the slice stopped for it and started again), files
//! compared by SHA-256 through ssh as the student; a student's root cannot reach a snapshot
//! (it is a file on the host, outside the slice's disk).

use slices::domain::SnapshotName;
use slices::slave_link::{code, Command};

use crate::lxc_node::{self, LxcNode};
use crate::system::*;

pub async fn a_slices_disk_goes_back_to_a_snapshot() {
    let mut node: LxcNode = lxc_node::start("snap1", "slbr-snap", "10.98.0.0/24").await;
    let work = node.work.path().to_path_buf();
    let (key, public) = keypair(&work, "alice-key");
    let a = super::archive::spec(4601, "10.98.0.11", &public);
    let _guard = super::archive::Cleanup(node.agent.clone(), vec![a.id]);
    let m = &mut node.master;
    let r = m
        .call(&Command::CreateEnv(Box::new(a.clone())))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "create_env: {}", r.text());
    assert_eq!(m.call(&Command::StartEnv(a.id)).await.unwrap().code, 0);
    let ssh = |cmd: &str| {
        wait_for_port("10.98.0.11:22", 60);
        let mut args: Vec<&str> = SSH_OPTS.to_vec();
        let k = key.to_str().unwrap().to_string();
        args.extend(["-i", &k, "alice@10.98.0.11", cmd]);
        sh("ssh", &args)
    };
    let sums = "sha256sum ~/work.bin | cut -d' ' -f1; cat ~/notes.txt";
    let before = ssh(&format!(
        "head -c 33554432 /dev/urandom > ~/work.bin && echo version 1 > ~/notes.txt && {sums}"
    ));
    let name = SnapshotName::parse("before-lab-3").unwrap();
    let t = std::time::Instant::now();
    let r = m
        .call(&Command::Snapshot(a.id, name.clone()))
        .await
        .unwrap();
    println!(
        "snapshot of a running slice: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.code, 0, "snapshot: {}", r.text());
    assert_eq!(r.returned[1]["name"], "before-lab-3");
    assert!(
        r.returned[1]["size"].as_u64().unwrap() >= 32 << 20,
        "{}",
        r.text()
    );
    // The same name again is a conflict; the slice runs on, unfrozen.
    let again = m
        .call(&Command::Snapshot(a.id, name.clone()))
        .await
        .unwrap();
    assert_eq!(again.code, code::CONFLICT);
    // The student changes and deletes things, and cannot see the snapshot from inside.
    let inside = ssh(
        "echo version 2 > ~/notes.txt && rm ~/work.bin && sudo find / -xdev -name 'before-lab-3*' 2>/dev/null | wc -l",
    );
    assert_eq!(
        inside.trim(),
        "0",
        "the snapshot is not on the slice's disk"
    );
    let t = std::time::Instant::now();
    let r = m
        .call(&Command::RestoreSnapshot(a.id, name.clone()))
        .await
        .unwrap();
    println!(
        "restore of a running slice: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.code, 0, "restore: {}", r.text());
    let st = m.call(&Command::EnvStatus(a.id)).await.unwrap();
    assert_eq!(st.returned[0]["state"], "running", "started again");
    assert_eq!(ssh(sums), before, "the files as they were");

    // Stopped: taken and listed too; a name that was never taken is refused.
    assert_eq!(m.call(&Command::StopEnv(a.id)).await.unwrap().code, 0);
    let second = SnapshotName::parse("stopped").unwrap();
    let r = m
        .call(&Command::Snapshot(a.id, second.clone()))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let list = m.call(&Command::ListSnapshots(a.id)).await.unwrap();
    let names: Vec<&str> = list
        .returned
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{}", list.text());
    assert!(names.contains(&"before-lab-3") && names.contains(&"stopped"));
    let r = m
        .call(&Command::RestoreSnapshot(
            a.id,
            SnapshotName::parse("never").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(r.code, code::NOT_FOUND);
    let r = m
        .call(&Command::RestoreSnapshot(a.id, second.clone()))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let st = m.call(&Command::EnvStatus(a.id)).await.unwrap();
    assert_eq!(st.returned[0]["state"], "stopped", "stays stopped");
    for n in [&name, &second] {
        let r = m
            .call(&Command::DropSnapshot(a.id, n.clone()))
            .await
            .unwrap();
        assert_eq!(r.text(), "dropped");
    }
    let list = m.call(&Command::ListSnapshots(a.id)).await.unwrap();
    assert!(list.returned.is_empty(), "{}", list.text());
}
