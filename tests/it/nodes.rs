//! Nodes as the master enrols and retires them: each its own subnet, never overlapping
//! another's; a node with live slices is not removed unless staff force it.

use slices::domain::{NodeAddress, NodeName, Role, Subnet};
use slices::slices::State;

use crate::fleet::fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnets_never_overlap_and_a_node_with_slices_stays() {
    let f = fleet(1, |_| "10.84.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &staff);
    f.wait_for(id, State::Running, 20).await;
    let pool = Subnet::parse("10.84.0.0/16").unwrap();
    let addr = NodeAddress::parse("127.0.0.1:9").unwrap();

    // A subnet that overlaps the running node's (as its agent reported it) is refused.
    let err = f
        .ctx
        .db
        .write(|tx| {
            slices::ops::nodes::enrol(
                tx,
                &NodeName::parse("n2").unwrap(),
                &addr,
                Some(Subnet::parse("10.84.0.128/25").unwrap()),
                &pool,
            )
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("overlaps node"), "{err}");
    // Without one, the next free /24 of the pool, and the one after for the next node.
    let mut given = Vec::new();
    for name in ["n2", "n3"] {
        let (node, s) = f
            .ctx
            .db
            .write(|tx| {
                slices::ops::nodes::enrol(tx, &NodeName::parse(name).unwrap(), &addr, None, &pool)
            })
            .unwrap();
        assert_eq!(node.subnet.as_deref(), Some(s.to_string().as_str()));
        given.push(s.to_string());
    }
    assert_eq!(given, ["10.84.1.0/24", "10.84.2.0/24"]);
    let routes = f.ctx.db.read(slices::ops::nodes::routes).unwrap();
    assert_eq!(routes.len(), 3, "{routes:?}");

    // A node with a live slice stays, unless forced; then the slice is left failed.
    let node = f.nodes[0].name.clone();
    let err = f
        .ctx
        .db
        .write(|tx| slices::ops::nodes::remove(tx, &node, false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("still has 1 live slice"), "{err}");
    jobs.stop().await;
    let (_, live) = f
        .ctx
        .db
        .write(|tx| slices::ops::nodes::remove(tx, &node, true))
        .unwrap();
    assert_eq!(live, 1);
    let s = f.slice(id);
    assert_eq!((s.state, s.node_id), (State::Failed, None));
    assert!(s.failure.contains("was removed"), "{}", s.failure);
    assert!(f
        .ctx
        .db
        .read(|c| slices::nodes::by_name(c, &node))
        .unwrap()
        .is_none());
}

/// The master talks only to an agent presenting the certificate its node was enrolled with
/// (or first seen with): the key of an earlier enrolment of the same name, signed by the same
/// CA, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_another_certificate_of_the_same_name_is_refused() {
    let f = fleet(1, |_| "10.85.0.0/24".into(), 0).await;
    let links = slices::jobs::Links::new(
        f.ctx.db.clone(),
        f.ca.client_config().unwrap(),
        std::time::Duration::from_secs(10),
    );
    let name = f.nodes[0].name.clone();
    let node = || {
        f.ctx
            .db
            .read(|c| slices::nodes::by_name(c, &name))
            .unwrap()
            .unwrap()
    };
    assert!(node().cert_sha256.is_none(), "enrolled before pins");
    // First contact pins the certificate seen.
    let first = links.connect(&node()).await.unwrap();
    let pinned = node().cert_sha256.expect("pinned at first contact");
    assert_eq!(pinned, first.peer_fingerprint());
    // Another agent of the same name, with a certificate of its own from the same CA (a key
    // kept from an earlier enrolment, say), at the node's address: refused.
    let impostor = crate::fleet::start_agent(f.dir.path(), &f.ca, &name, "10.85.0.0/24", 0).await;
    f.ctx
        .db
        .write(|tx| {
            slices::nodes::set_address(
                tx,
                &NodeName::parse(&name).unwrap(),
                &NodeAddress::parse(&impostor.address).unwrap(),
            )
        })
        .unwrap();
    let err = match links.connect(&node()).await {
        Ok(_) => panic!("the impostor was let in"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("other than the one this node was enrolled with"),
        "{err}"
    );
    assert_eq!(
        node().cert_sha256.as_deref(),
        Some(pinned.as_str()),
        "the pin stays"
    );
}

/// `node remove --move`: the node drains, its slices are made anew on another node, and then
/// it can be removed without force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_emptied_onto_the_others_and_then_removed() {
    let f = fleet(2, |i| format!("10.86.{i}.0/24"), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &staff);
    let before = f.wait_for(id, State::Running, 20).await;
    let from = before.node_id.unwrap();
    let name = f
        .ctx
        .db
        .read(|c| slices::nodes::by_id(c, from))
        .unwrap()
        .unwrap()
        .name;
    let (moved, left) = f
        .ctx
        .db
        .write(|tx| slices::ops::nodes::move_off(tx, &name))
        .unwrap();
    assert_eq!((moved, left), (1, 0));
    let start = std::time::Instant::now();
    let after = loop {
        let s = f.slice(id);
        if s.state == State::Running && s.node_id.is_some() && s.node_id != Some(from) {
            break s;
        }
        assert!(start.elapsed().as_secs() < 30, "not moved: {s:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_ne!(after.node_id, Some(from));
    jobs.drain(20).await;
    let (_, live) = f
        .ctx
        .db
        .write(|tx| slices::ops::nodes::remove(tx, &name, false))
        .unwrap();
    assert_eq!(live, 0);
    assert_eq!(
        f.slice(id).state,
        State::Running,
        "the slice lives on elsewhere"
    );
}

/// A node being removed is told over the link to retire: its agent takes its network policy
/// away and says what it left; after that its certificate is no longer trusted (the pin went
/// with the node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_is_told_to_retire() {
    let f = fleet(1, |_| "10.87.0.0/24".into(), 0).await;
    let name = f.nodes[0].name.clone();
    let (node, live) = f
        .ctx
        .db
        .write(|tx| slices::ops::nodes::remove(tx, &name, false))
        .unwrap();
    assert_eq!(live, 0);
    let mut link = slices::nodes::connect(&f.ca, &node, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let r = link
        .call(&slices::slave_link::Command::Retire)
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(r.returned, [serde_json::json!("no containers were left")]);
}
