//! Snapshots through the pages, with a real agent behind real mutual TLS (the simulator keeps
//! a copy of the slice's /home as its "disk"): taken with a note, restored only with the
//! slice's name typed (files back as they were), bounded by the plan, deleted; what the node
//! has is read back (one gone from the node goes from the page, one found there shows); no
//! other student can see or touch them.

use std::time::{Duration, Instant};

use slices::domain::Role;
use slices::slices::State;

use crate::fleet::*;
use crate::http::{browser, form, page};

fn rows(f: &Fleet, id: i64) -> Vec<slices::records::snapshots::Snapshot> {
    f.ctx
        .db
        .read(move |c| slices::records::snapshots::of_slice(c, id))
        .unwrap()
}

/// Waits until no snapshot of the slice is being taken, restored or deleted.
async fn settled(f: &Fleet, id: i64) -> Vec<slices::records::snapshots::Snapshot> {
    let start = Instant::now();
    loop {
        let r = rows(f, id);
        let busy = r
            .iter()
            .any(|s| matches!(s.state.as_str(), "taking" | "restoring" | "deleting"));
        let queued = f.count(&format!(
            "SELECT count(*) FROM jobs WHERE slice_id = {id} AND kind = 'snapshots' AND state IN ('queued', 'running')"
        ));
        if !busy && queued == 0 {
            return r;
        }
        assert!(start.elapsed().as_secs() < 20, "still busy: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_snapshots_restores_and_deletes_and_nobody_else_may() {
    let f = fleet(1, |_| "10.92.0.0/24".into(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    f.user("bob", Role::Student);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &tess);
    let slice = f.wait_for(id, State::Running, 30).await;
    let veid = slice.veid.unwrap();
    let home = f.nodes[0].state.join(format!("sim/{veid}.home/alice"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("db.sql"), "version 1\n").unwrap();
    let path = format!("/slices/{id}/snapshots");

    let a = browser();
    crate::http::log_in(&a, &base, "alice").await;
    assert!(
        page(&a, &format!("{base}/")).await.contains(&path),
        "the card links to it"
    );
    let shown = page(&a, &format!("{base}{path}")).await;
    assert!(shown.contains("No snapshots yet"), "{shown}");
    assert!(shown.contains("keeps 3 snapshots"), "{shown}");
    assert_eq!(
        form(&a, &base, &path, &path, &[("note", "before the upgrade")]).await,
        reqwest::StatusCode::SEE_OTHER
    );
    let taken = settled(&f, id).await;
    assert_eq!(taken.len(), 1);
    let snap = taken[0].clone();
    assert_eq!(
        (snap.state.as_str(), snap.note.as_str()),
        ("ready", "before the upgrade")
    );
    assert!(
        snap.size.unwrap() > 0 && snap.taken_at.is_some(),
        "{snap:?}"
    );
    assert!(snap.name.starts_with("s20"), "{}", snap.name);

    // Another student: nothing to see or do.
    let bob = browser();
    crate::http::log_in(&bob, &base, "bob").await;
    let r = bob.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    for (action, fields) in [
        (path.clone(), vec![("note", "mine")]),
        (
            format!("{path}/{}/restore", snap.name),
            vec![("confirm", slice.hostname.as_str())],
        ),
        (format!("{path}/{}/delete", snap.name), vec![]),
    ] {
        let status = form(&bob, &base, "/", &action, &fields).await;
        assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{action}");
    }
    assert_eq!(rows(&f, id).len(), 1);

    // The student changes things; a restore without the typed name does nothing.
    std::fs::write(home.join("db.sql"), "version 2, broken\n").unwrap();
    let restore = format!("{path}/{}/restore", snap.name);
    form(&a, &base, &path, &restore, &[("confirm", "nope")]).await;
    assert_eq!(settled(&f, id).await[0].state, "ready");
    assert_eq!(
        std::fs::read_to_string(home.join("db.sql")).unwrap(),
        "version 2, broken\n"
    );
    form(
        &a,
        &base,
        &path,
        &restore,
        &[("confirm", slice.hostname.as_str())],
    )
    .await;
    settled(&f, id).await;
    assert_eq!(
        std::fs::read_to_string(home.join("db.sql")).unwrap(),
        "version 1\n"
    );
    assert_eq!(f.slice(id).state, State::Running, "running again");

    // The plan keeps three: a fourth is refused with a reason.
    for n in 0..3 {
        form(&a, &base, &path, &path, &[("note", &format!("n{n}"))]).await;
        settled(&f, id).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // names are by the second
    }
    assert_eq!(rows(&f, id).len(), 3, "{:?}", rows(&f, id));
    assert!(page(&a, &format!("{base}{path}"))
        .await
        .contains("delete one first"));

    // What the node has is the truth: one removed there goes, one made there shows.
    let on_node = f.nodes[0].state.join(format!("sim/{veid}.snapshots"));
    let all = rows(&f, id);
    std::fs::remove_dir_all(on_node.join(&all[0].name)).unwrap();
    std::fs::create_dir_all(on_node.join("by-hand")).unwrap();
    let delete = format!("{path}/{}/delete", all[1].name);
    form(&a, &base, &path, &delete, &[]).await;
    let now: Vec<String> = settled(&f, id).await.into_iter().map(|s| s.name).collect();
    assert!(
        !now.contains(&all[0].name) && !now.contains(&all[1].name),
        "{now:?}"
    );
    assert!(now.contains(&"by-hand".to_string()), "{now:?}");
    assert!(!on_node.join(&all[1].name).exists(), "deleted on the node");
    assert!(page(&a, &format!("{base}{path}"))
        .await
        .contains("found on the node"));

    // Destroyed: its snapshots go with it.
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, slices::jobs::JobKind::Destroy, ""))
        .unwrap();
    f.wait_for(id, State::Destroyed, 20).await;
    assert!(rows(&f, id).is_empty());
    assert!(!on_node.exists());
    jobs.stop().await;
    handle.stop(false).await;
}
