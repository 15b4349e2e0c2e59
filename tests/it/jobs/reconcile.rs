//! What happens on a node behind the master's back is found and put right: the reconcile job
//! compares each node's containers with the database.

use std::time::{Duration, Instant};

use slices::domain::{NodeName, Role, VeId};
use slices::slave_link::{AgentClient, Command};
use slices::slices::State;

use crate::fleet::*;

/// Someone else's connection to the node (as a person at the node would act behind the
/// master's back).
pub async fn behind_the_back(f: &Fleet) -> AgentClient {
    AgentClient::connect(
        &f.nodes[0].address,
        &NodeName::parse("node0").unwrap(),
        f.ca.client_config().unwrap(),
        Duration::from_secs(30),
    )
    .await
    .unwrap()
}

fn veid(f: &Fleet, slice: i64) -> VeId {
    VeId::new(f.slice(slice).veid.unwrap() as u64).unwrap()
}

async fn until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events(f: &Fleet, slice: i64) -> String {
    f.ctx
        .db
        .read(|c| slices::slices::events(c, slice, 50))
        .unwrap()
        .into_iter()
        .map(|e| e.message + "\n")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_slice_is_started_again_a_lost_one_is_made_again_and_an_orphan_removed() {
    let f = fleet(1, |_| "10.85.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let (a, b) = (f.user("ann", Role::Student), f.user("bea", Role::Student));
    let (sa, sb) = (
        f.request_and_approve(&a, &staff),
        f.request_and_approve(&b, &staff),
    );
    let jobs = f.run_jobs(|c| c.reconcile_secs = 1);
    f.wait_for(sa, State::Running, 20).await;
    f.wait_for(sb, State::Running, 20).await;
    jobs.drain(20).await;
    let mut node = behind_the_back(&f).await;

    // Ann's container is stopped behind the master's back: it runs again, and she is told why.
    node.call(&Command::StopEnv(veid(&f, sa))).await.unwrap();
    until("ann's slice found stopped", 20, || {
        events(&f, sa).contains("Found stopped on node0, not by Slices")
    })
    .await;
    let start = Instant::now();
    loop {
        let r = node.call(&Command::EnvStatus(veid(&f, sa))).await.unwrap();
        if r.returned[0]["state"] == "running" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not started again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.slice(sa).state, State::Running);

    // Bea's container is destroyed behind its back: her slice is shown lost.
    node.call(&Command::DestroyEnv(veid(&f, sb))).await.unwrap();
    until("bea's slice marked lost", 20, || {
        f.slice(sb).state == State::Failed
    })
    .await;
    assert!(
        f.slice(sb).failure.contains("lost"),
        "{}",
        f.slice(sb).failure
    );

    // A container no slice holds is reported to staff, once.
    let orphan = crate::link::helpers::spec(4999, "10.85.0.200");
    let r = node
        .call(&Command::CreateEnv(Box::new(orphan)))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    until("the orphan reported", 20, || {
        f.count("SELECT count(*) FROM audit WHERE event = 'drift' AND subject_kind = 'container' AND subject = 've4999 on node0'") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'drift' AND subject_kind = 'container' AND subject = 've4999 on node0'"),
        1,
        "reported once, not every minute"
    );
    assert!(
        f.count(
            "SELECT count(*) FROM audit WHERE event = 'drift' AND detail LIKE '%started again%'"
        ) >= 1
    );

    // Staff, on the pages: the orphan is listed (its id kept from new slices), and the lost
    // slice has a way back.
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let tess = crate::http::browser();
    crate::http::log_in(&tess, &base, "tess").await;
    let page = |path: String| {
        let tess = tess.clone();
        async move { tess.get(path).send().await.unwrap().text().await.unwrap() }
    };
    let nodes = page(format!("{base}/staff/nodes")).await;
    assert!(
        nodes.contains("/staff/nodes/node0/orphans/4999/remove"),
        "{nodes}"
    );
    let node0 = f
        .ctx
        .db
        .read(|c| slices::nodes::by_name(c, "node0"))
        .unwrap()
        .unwrap();
    let (ips, ids) = f
        .ctx
        .db
        .read(|c| slices::records::placement::taken_on(c, node0.id))
        .unwrap();
    assert!(
        ids.contains(&4999),
        "an orphan's id is not given to a slice"
    );
    assert!(ips.contains("10.85.0.200"), "nor its address");

    // Bea's lost slice is made again where it was: same address, a new container, running.
    let ip = f.slice(sb).ip.clone();
    let slice_page = page(format!("{base}/staff/slices/{sb}")).await;
    assert!(slice_page.contains("Make it again"), "{slice_page}");
    let status = crate::http::form(
        &tess,
        &base,
        &format!("/staff/slices/{sb}"),
        &format!("/staff/slices/{sb}/remake"),
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let again = f.wait_for(sb, State::Running, 20).await;
    assert_eq!(again.ip, ip, "made again at its address");
    let r = node.call(&Command::EnvStatus(veid(&f, sb))).await.unwrap();
    assert_eq!(r.returned[0]["state"], "running");
    assert!(events(&f, sb).contains("Made again, as tess asked."));
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'slice_remade'"),
        1
    );
    // A running slice is not made again.
    crate::http::form(
        &tess,
        &base,
        &format!("/staff/slices/{sb}"),
        &format!("/staff/slices/{sb}/remake"),
        &[],
    )
    .await;
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM jobs WHERE slice_id = {sb} AND state IN ('queued', 'running')"
        )),
        0
    );

    // The orphan: a wrong confirmation removes nothing; the right one removes it on the node.
    let remove = "/staff/nodes/node0/orphans/4999/remove";
    crate::http::form(&tess, &base, "/staff/nodes", remove, &[("confirm", "4998")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = node
        .call(&Command::EnvStatus(VeId::new(4999).unwrap()))
        .await
        .unwrap();
    assert_ne!(
        r.returned[0]["state"], "absent",
        "kept without the confirmation"
    );
    let status =
        crate::http::form(&tess, &base, "/staff/nodes", remove, &[("confirm", "4999")]).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    until("the orphan removed", 20, || {
        f.count("SELECT count(*) FROM orphans") == 0
    })
    .await;
    let r = node
        .call(&Command::EnvStatus(VeId::new(4999).unwrap()))
        .await
        .unwrap();
    assert_eq!(r.returned[0]["state"], "absent");
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'orphan_removed' AND subject_kind = 'container' AND subject = 've4999 on node0'"),
        1
    );
    // No longer listed after the next reconcile either.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(f.count("SELECT count(*) FROM orphans"), 0);
    assert!(!page(format!("{base}/staff/nodes"))
        .await
        .contains("orphans/4999"));
    jobs.stop().await;
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_report_policy_a_slice_found_stopped_is_shown_stopped() {
    let f = fleet_with(
        1,
        |_| "10.85.1.0/24".into(),
        0,
        &[("reconcile_policy", "report".into())],
    )
    .await;
    let staff = f.user("tess", Role::Staff);
    let a = f.user("ann", Role::Student);
    let sa = f.request_and_approve(&a, &staff);
    let jobs = f.run_jobs(|c| c.reconcile_secs = 1);
    f.wait_for(sa, State::Running, 20).await;
    jobs.drain(20).await;
    let mut node = behind_the_back(&f).await;
    node.call(&Command::StopEnv(veid(&f, sa))).await.unwrap();
    f.wait_for(sa, State::Stopped, 20).await;
    assert!(events(&f, sa).contains("Found stopped on node0, not by Slices."));
    let r = node.call(&Command::EnvStatus(veid(&f, sa))).await.unwrap();
    assert_eq!(r.returned[0]["state"], "stopped", "reported, not started");
    jobs.stop().await;
}

/// A node's list is read, then the database: a slice made (or changed) on the node after the
/// list was taken must not be judged by that list. Here the slice's container is gone from the
/// node while its row says it changed after the list: the round leaves it; once its last change
/// is before the list, the next round marks it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_changed_after_the_nodes_list_was_taken_is_left_to_the_next_round() {
    let f = fleet(1, |_| "10.85.2.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let a = f.user("ann", Role::Student);
    let sa = f.request_and_approve(&a, &staff);
    let jobs = f.run_jobs(|c| c.reconcile_secs = 1);
    f.wait_for(sa, State::Running, 20).await;
    jobs.drain(20).await;
    jobs.stop().await;

    // Gone from the node, and (as a job that ended between the list and the reading would
    // leave it) changed after any list taken now.
    let mut node = behind_the_back(&f).await;
    node.call(&Command::DestroyEnv(veid(&f, sa))).await.unwrap();
    let changed_at = |at: i64| {
        f.ctx
            .db
            .write(|tx| {
                tx.execute(
                    "UPDATE slices SET updated_at = ?2 WHERE id = ?1",
                    rusqlite::params![sa, at],
                )?;
                Ok::<_, slices::error::Error>(())
            })
            .unwrap()
    };
    changed_at(slices::store::now() + 3600);
    let reconciled = |f: &Fleet| {
        f.count("SELECT count(*) FROM jobs WHERE kind = 'reconcile' AND state = 'succeeded'")
    };
    let before = reconciled(&f);
    let jobs = f.run_jobs(|c| c.reconcile_secs = 1);
    until("two reconcile rounds", 20, || reconciled(&f) >= before + 2).await;
    assert_eq!(
        f.slice(sa).state,
        State::Running,
        "judged by a list older than its last change: {}",
        events(&f, sa)
    );

    // Its last change now before the list: the next round finds it lost.
    changed_at(slices::store::now() - 60);
    until("the slice marked lost", 20, || {
        f.slice(sa).state == State::Failed
    })
    .await;
    jobs.stop().await;
}
