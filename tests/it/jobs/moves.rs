//! Moves and reinstalls that keep the student's files, with real agents behind real mutual
//! TLS: the new container is made and started while the old one stays, /home is packed on
//! the old node, carried over the links and checked by SHA-256, the slice takes the new place,
//! and only then is the old container removed. A move that fails part-way removes what it made
//! and leaves the slice as it was. Nobody but the owner and staff may reinstall a slice.

use std::time::{Duration, Instant};

use slices::domain::Role;
use slices::slices::State;

use crate::fleet::*;
use crate::http::{browser, form, page};

/// What the student has in /home on the simulator: a note, and 3 MB that do not compress.
fn write_home(node: &Node, veid: i64) -> Vec<u8> {
    let home = node.state.join(format!("sim/{veid}.home/alice"));
    std::fs::create_dir_all(home.join("thesis")).unwrap();
    std::fs::write(
        home.join("thesis/chapter1.txt"),
        b"It was a dark and stormy night.\n",
    )
    .unwrap();
    let mut big = vec![0u8; 3 << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(home.join("data.bin"), &big).unwrap();
    big
}

fn read_home(node: &Node, veid: i64, file: &str) -> Option<Vec<u8>> {
    std::fs::read(node.state.join(format!("sim/{veid}.home/alice/{file}"))).ok()
}

/// The slice once it is `state` with no move under way.
async fn settled(f: &Fleet, id: i64, state: State, secs: u64) -> slices::slices::Slice {
    let start = Instant::now();
    loop {
        let s = f.slice(id);
        let moving = f.count(&format!("SELECT count(*) FROM moves WHERE slice_id = {id}"));
        if s.state == state && moving == 0 {
            return s;
        }
        assert!(
            start.elapsed().as_secs() < secs,
            "not {state:?}: {s:?}, {moving} move row(s); events: {:?}",
            events(f, id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(f: &Fleet, id: i64) -> Vec<String> {
    let mut e: Vec<String> = f
        .ctx
        .db
        .read(move |c| slices::slices::events(c, id, 100))
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    e.reverse();
    e
}

fn index_of(f: &Fleet, node_id: i64) -> usize {
    let name = f
        .ctx
        .db
        .read(move |c| slices::nodes::by_id(c, node_id))
        .unwrap()
        .unwrap()
        .name;
    f.nodes.iter().position(|n| n.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_carries_home_over_and_removes_the_old_container_only_once_the_new_one_runs() {
    let f = fleet(2, |i| format!("10.88.{i}.0/24"), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &tess);
    let before = f.wait_for(id, State::Running, 30).await;
    let (old, veid) = (index_of(&f, before.node_id.unwrap()), before.veid.unwrap());
    let new = 1 - old;
    let big = write_home(&f.nodes[old], veid);

    let target = f.nodes[new].name.clone();
    let moving = f
        .ctx
        .db
        .write(|tx| slices::slices::move_to(tx, &tess, id, &target))
        .unwrap();
    assert_eq!(moving.state, State::Provisioning);
    let after = settled(&f, id, State::Running, 30).await;
    assert_eq!(index_of(&f, after.node_id.unwrap()), new);
    assert!(after.ip.as_deref().unwrap().starts_with("10.88."));
    assert_ne!(after.ip, before.ip);

    // Every file came along, byte for byte; the old container is gone, the new one runs.
    let new_veid = after.veid.unwrap();
    assert_eq!(
        read_home(&f.nodes[new], new_veid, "data.bin").as_deref(),
        Some(&big[..])
    );
    assert_eq!(
        read_home(&f.nodes[new], new_veid, "thesis/chapter1.txt").as_deref(),
        Some(&b"It was a dark and stormy night.\n"[..])
    );
    assert_eq!(f.nodes[old].containers(), 0, "the old container is removed");
    assert_eq!(f.nodes[new].containers(), 1);
    // In that order: the new one ran with /home in it before the old one went.
    let log = events(&f, id);
    let at = |text: &str| {
        log.iter()
            .position(|e| e.contains(text))
            .unwrap_or_else(|| panic!("no event with {text:?}: {log:?}"))
    };
    assert!(at("New container started") < at("/home packed"));
    assert!(at("/home packed") < at("SHA-256 matched"));
    assert!(at("SHA-256 matched") < at("Moved on node"));
    assert!(at("Moved on node") < at(&format!("The old container {veid} on node")));
    // The owner is told, and how to log in; nothing is left for staff to clean up.
    let mail = f.count("SELECT count(*) FROM outbox WHERE kind = 'slice_moved'");
    assert_eq!(mail, 1);
    jobs.drain(20).await;
    assert_eq!(f.count("SELECT count(*) FROM orphans"), 0);
    // Room: the node it left holds nothing, the one it went to holds it once.
    assert_eq!(
        f.count(&format!(
            "SELECT coalesce(sum(n), 0) FROM node_usage WHERE node_id = {}",
            before.node_id.unwrap()
        )),
        0
    );
    assert_eq!(
        f.count(&format!(
            "SELECT n FROM node_usage WHERE node_id = {}",
            after.node_id.unwrap()
        )),
        1
    );
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_fails_part_way_leaves_the_slice_as_it_was() {
    let f = fleet(2, |i| format!("10.89.{i}.0/24"), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|c| c.retry_base_secs = 0);
    let id = f.request_and_approve(&alice, &tess);
    let before = f.wait_for(id, State::Running, 30).await;
    let (old, veid) = (index_of(&f, before.node_id.unwrap()), before.veid.unwrap());
    let new = 1 - old;
    let big = write_home(&f.nodes[old], veid);
    // A socket in /home: the node's tar cannot pack it, so packing fails (after the new
    // container was made and started, and the old one stopped).
    let _socket = std::os::unix::net::UnixListener::bind(
        f.nodes[old]
            .state
            .join(format!("sim/{veid}.home/alice/app.sock")),
    )
    .unwrap();

    let target = f.nodes[new].name.clone();
    f.ctx
        .db
        .write(|tx| slices::slices::move_to(tx, &tess, id, &target))
        .unwrap();
    let after = settled(&f, id, State::Running, 30).await;
    assert_eq!(after.node_id, before.node_id, "still where it was");
    assert_eq!(after.veid, before.veid);
    assert_eq!(after.ip, before.ip);
    assert_eq!(
        read_home(&f.nodes[old], veid, "data.bin").as_deref(),
        Some(&big[..])
    );
    jobs.expect_leftovers(); // the move job, failed
    jobs.drain(20).await;
    assert_eq!(f.nodes[new].containers(), 0, "the new container is removed");
    assert_eq!(f.nodes[old].containers(), 1);
    let log = events(&f, id);
    assert!(
        log.iter().any(|e| e.contains("The move failed")
            && e.contains("stays as it was")
            && e.contains("started again")),
        "{log:?}"
    );
    assert_eq!(f.slice(id).state, State::Running, "started again");
    assert_eq!(
        f.count(&format!(
            "SELECT n FROM node_usage WHERE node_id = {}",
            before.node_id.unwrap()
        )),
        1
    );
    assert_eq!(
        f.count(&format!(
            "SELECT coalesce(sum(n), 0) FROM node_usage WHERE node_id <> {}",
            before.node_id.unwrap()
        )),
        0,
        "the new place is given back"
    );
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_reinstalls_a_slice_keeping_home_and_nobody_else_may() {
    let f = fleet(1, |_| "10.90.0.0/24".into(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    f.user("bob", Role::Student);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &tess);
    let before = f.wait_for(id, State::Running, 30).await;
    let veid = before.veid.unwrap();
    let big = write_home(&f.nodes[0], veid);
    let host = before.hostname.clone();
    let path = format!("/slices/{id}/reinstall");

    // Another student sees nothing and can do nothing.
    let bob = browser();
    crate::http::log_in(&bob, &base, "bob").await;
    let r = bob.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    let status = form(
        &bob,
        &base,
        "/",
        &path,
        &[
            ("template", "debian-12"),
            ("keep_home", "on"),
            ("confirm", &host),
        ],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(f.slice(id).state, State::Running);

    let a = browser();
    crate::http::log_in(&a, &base, "alice").await;
    let home = page(&a, &format!("{base}/")).await;
    assert!(home.contains(&path), "the card links to it");
    let shown = page(&a, &format!("{base}{path}")).await;
    assert!(
        shown.contains("Your /home is packed and carried into it"),
        "{shown}"
    );
    let template = before.template.clone();
    // Without the typed name nothing happens; the page says why.
    let r = {
        let token = crate::http::csrf(&a, &format!("{base}{path}")).await;
        a.post(format!("{base}{path}"))
            .header("Origin", &base)
            .form(&[
                ("template", template.as_str()),
                ("keep_home", "on"),
                ("confirm", "nope"),
                ("csrf", &token),
            ])
            .send()
            .await
            .unwrap()
    };
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("to reinstall it"));
    assert_eq!(f.slice(id).state, State::Running);
    // A template nobody offers is refused.
    let status = form(
        &a,
        &base,
        &path,
        &path,
        &[
            ("template", "../../etc"),
            ("keep_home", "on"),
            ("confirm", &host),
        ],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    // With it: made anew on its node, /home carried over.
    let status = form(
        &a,
        &base,
        &path,
        &path,
        &[
            ("template", template.as_str()),
            ("keep_home", "on"),
            ("confirm", &host),
        ],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let after = settled(&f, id, State::Running, 30).await;
    assert_eq!(after.node_id, before.node_id);
    assert_ne!(after.veid, before.veid, "a new container");
    assert_eq!(
        read_home(&f.nodes[0], after.veid.unwrap(), "data.bin").as_deref(),
        Some(&big[..])
    );
    jobs.drain(20).await;
    assert_eq!(f.nodes[0].containers(), 1, "the old one is removed");
    assert!(events(&f, id)
        .iter()
        .any(|e| e.contains(&format!("Reinstalled from {template}"))));

    // Stopped, and without /home: it comes back stopped and empty (the simulator's note only).
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, slices::jobs::JobKind::Stop, ""))
        .unwrap();
    let stopped = f.wait_for(id, State::Stopped, 20).await;
    let status = form(
        &a,
        &base,
        &path,
        &path,
        &[("template", template.as_str()), ("confirm", &host)],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let last = settled(&f, id, State::Stopped, 30).await;
    assert_ne!(last.veid, stopped.veid);
    assert_eq!(read_home(&f.nodes[0], last.veid.unwrap(), "data.bin"), None);
    jobs.stop().await;
    handle.stop(false).await;
}

/// The real master process, killed while a move is packing /home and started again: the move
/// goes on from its last step, and no container is made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_move_goes_on_and_makes_nothing_twice() {
    // Each agent operation takes 0.7 s, so the kill lands among the move's calls.
    let f = fleet(2, |i| format!("10.91.{i}.0/24"), 700).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &tess);
    let mut master = f.start_master(&[]);
    let before = f.wait_for(id, State::Running, 30).await;
    let (old, veid) = (index_of(&f, before.node_id.unwrap()), before.veid.unwrap());
    let big = write_home(&f.nodes[old], veid);
    let target = f.nodes[1 - old].name.clone();
    f.ctx
        .db
        .write(|tx| slices::slices::move_to(tx, &tess, id, &target))
        .unwrap();
    let start = Instant::now();
    while f.slice(id).step != slices::slices::STEPS[2] {
        assert!(start.elapsed().as_secs() < 30, "{:?}", f.slice(id));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    master.0.kill().unwrap(); // SIGKILL: no chance to tidy up
    master.0.wait().unwrap();
    assert_eq!(f.slice(id).state, State::Provisioning, "killed mid-way");
    assert_eq!(f.slice(id).node_id, before.node_id, "not switched yet");

    let _master = f.start_master(&[]);
    let after = settled(&f, id, State::Running, 60).await;
    assert_ne!(after.node_id, before.node_id);
    assert_eq!(
        read_home(&f.nodes[1 - old], after.veid.unwrap(), "data.bin").as_deref(),
        Some(&big[..])
    );
    assert_eq!(f.nodes[old].containers(), 0);
    assert_eq!(f.nodes[1 - old].containers(), 1);
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM agent_log WHERE slice_id = {id} AND command = 'create_env'"
        )),
        2,
        "one container made by the provision, one by the move"
    );
}
