use std::collections::HashSet;

use slices::domain::Role;
use slices::jobs::JobKind;
use slices::slices::State;

use crate::fleet::*;
use slices::slave_link::pki::Ca;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_becomes_a_running_slice_and_is_destroyed() {
    let f = fleet(2, |i| format!("10.80.{i}.0/24"), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &staff);
    let s = f.wait_for(id, State::Running, 20).await;
    assert!(s.node_id.is_some());
    assert_eq!(s.veid, Some(101));
    assert!(s.ip.as_deref().unwrap().starts_with("10.80."), "{:?}", s.ip);
    assert_eq!(s.hostname, "alice");
    assert_eq!(f.nodes.iter().map(|n| n.containers()).sum::<usize>(), 1);

    // The story is told, and every agent command is in the log with its answer.
    let events: Vec<String> = f
        .ctx
        .db
        .read(|c| slices::slices::events(c, id, 20))
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        events.iter().any(|e| e.starts_with("Approved by tess")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("Placed on node")),
        "{events:?}"
    );
    assert!(events[0].starts_with("Running on node"), "{events:?}");
    let log = f
        .ctx
        .db
        .read(|c| slices::records::agent_log::command_log(c, None, Some(id), 20))
        .unwrap();
    let commands: Vec<(&str, Option<i64>)> = log
        .iter()
        .rev()
        .map(|l| (l.command.as_str(), l.code))
        .collect();
    assert_eq!(
        commands,
        vec![("create_env", Some(0)), ("start_env", Some(0))]
    );
    assert!(
        log[1].arguments.contains("\"alice\""),
        "{}",
        log[1].arguments
    );

    // The mail: staff heard of the request; the student of the approval and the ready slice,
    // with the exact ssh command and web address.
    let outbox = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 50, 0))
        .unwrap()
        .0;
    let to = |addr: &str, kind: &str| {
        outbox
            .iter()
            .find(|m| m.to_addr == addr && m.kind == kind)
            .cloned()
    };
    assert!(
        to("tess@example.edu", "new_request").is_some(),
        "{:?}",
        outbox
            .iter()
            .map(|m| (&m.to_addr, &m.kind))
            .collect::<Vec<_>>()
    );
    assert!(to("alice@example.edu", "approved").is_some());
    let ready = to("alice@example.edu", "slice_ready").expect("the ready mail");
    let site = f.ctx.site();
    let rendered =
        slices::mail::render(slices::mail::Kind::SliceReady, &ready.data, &site).unwrap();
    let text = rendered.text;
    assert!(
        text.contains("\n    ssh -p 2222 alice@localhost\n"),
        "{text}"
    );
    assert!(
        rendered
            .html
            .contains(">ssh -p 2222 alice@localhost</code>"),
        "the HTML part shows it as a command: {}",
        rendered.html
    );
    assert!(
        !text.contains("$ "),
        "no prompt to copy with the command: {text}"
    );
    assert!(text.contains("http://alice.slices.localhost/"), "{text}");
    assert!(text.contains(s.ip.as_deref().unwrap()), "{text}");
    // The default plan makes the student root, and the mail says how to use it.
    assert!(
        text.contains("    sudo apt-get install postgresql"),
        "{text}"
    );

    // Stop, start, destroy.
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, JobKind::Stop, ""))
        .unwrap();
    jobs.runner.wake();
    f.wait_for(id, State::Stopped, 10).await;
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, JobKind::Start, ""))
        .unwrap();
    jobs.runner.wake();
    f.wait_for(id, State::Running, 10).await;
    // A student cannot touch another's slice (it does not exist for them).
    let bob = f.user("bob", Role::Student);
    assert!(f
        .ctx
        .db
        .write(|tx| slices::slices::act(tx, &bob, id, JobKind::Destroy, ""))
        .is_err());
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, JobKind::Destroy, ""))
        .unwrap();
    jobs.runner.wake();
    let s = f.wait_for(id, State::Destroyed, 10).await;
    // Each of her asks is in the audit log, about that slice, by her.
    for event in ["slice_stop", "slice_start", "slice_destroy"] {
        assert_eq!(
            f.count(&format!(
                "SELECT count(*) FROM audit WHERE event = '{event}' AND subject_kind = 'slice'
                   AND subject = '{id}' AND actor_id = {}",
                alice.id
            )),
            1,
            "{event}"
        );
    }
    assert_eq!(
        (s.ip, s.veid),
        (None, None),
        "the address and id are released"
    );
    assert_eq!(f.nodes.iter().map(|n| n.containers()).sum::<usize>(), 0);
    let kinds: Vec<String> = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 50, 0))
        .unwrap()
        .0
        .into_iter()
        .filter(|m| m.to_addr == "alice@example.edu")
        .map(|m| m.kind)
        .collect();
    assert!(
        kinds.contains(&"slice_stopped".to_string())
            && kinds.contains(&"slice_destroyed".to_string()),
        "{kinds:?}"
    );
    // A denied request: the student reads the reason.
    let carl = f.user("carl", Role::Student);
    let denied = f
        .ctx
        .db
        .write(|tx| {
            let r = slices::slices::request(
                tx,
                &carl,
                &slices::slices::Request {
                    template: TEMPLATE.parse().unwrap(),
                    plan_id: None,
                    course: String::new(),
                    purpose: String::new(),
                    name: String::new(),
                },
            )?;
            slices::slices::deny(tx, &staff, r.id, "Use the course's shared server.", "")
        })
        .unwrap();
    assert_eq!(denied.state, State::Denied);
    let outbox = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 50, 0))
        .unwrap()
        .0;
    let m = outbox
        .iter()
        .find(|m| m.kind == "denied")
        .expect("the denial mail");
    assert_eq!(m.to_addr, "carl@example.edu");
    let text = slices::mail::render(slices::mail::Kind::Denied, &m.data, &site)
        .unwrap()
        .text;
    assert!(text.contains("Use the course's shared server."), "{text}");
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_at_the_same_moment_never_share_an_address_or_an_id() {
    let f = fleet(2, |i| format!("10.81.{i}.0/24"), 0).await;
    let staff = f.user("tess", Role::Staff);
    let mut ids = Vec::new();
    for i in 0..30 {
        let student = f.user(&format!("s{i:02}"), Role::Student);
        ids.push(f.request_and_approve(&student, &staff));
    }
    let jobs = f.run_jobs(|c| {
        c.concurrency = 16;
        c.per_node = 8;
    });
    let mut seen = HashSet::new();
    for id in &ids {
        let s = f.wait_for(*id, State::Running, 30).await;
        assert!(
            seen.insert((s.node_id, s.ip.clone())),
            "address used twice: {:?}",
            s.ip
        );
        assert!(
            seen.insert((s.node_id, s.veid.map(|v| v.to_string()))),
            "id used twice: {:?}",
            s.veid
        );
    }
    assert_eq!(f.nodes.iter().map(|n| n.containers()).sum::<usize>(), 30);
    // Spread: the ranking sends slices to the node with more room.
    assert!(
        f.nodes.iter().all(|n| n.containers() >= 10),
        "{:?}",
        f.nodes.iter().map(|n| n.containers()).collect::<Vec<_>>()
    );
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_per_node_holds_for_provisioning_too() {
    // 16 approvals at once, one node, 4 jobs per node: counted at the agent.
    let f = fleet(1, |_| "10.84.0.0/24".into(), 150).await;
    let staff = f.user("tess", Role::Staff);
    let mut ids = Vec::new();
    for i in 0..16 {
        let student = f.user(&format!("p{i:02}"), Role::Student);
        ids.push(f.request_and_approve(&student, &staff));
    }
    let jobs = f.run_jobs(|c| {
        c.concurrency = 16;
        c.per_node = 4;
    });
    for id in &ids {
        f.wait_for(*id, State::Running, 60).await;
    }
    let busiest = f.nodes[0].busiest();
    assert!(
        (2..=4).contains(&busiest),
        "at most 4 container commands at once on the node (and more than one): {busiest}"
    );
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_queues_requests_and_a_destroyed_slice_makes_room() {
    // A /29 has five addresses for slices.
    let f = fleet(1, |_| "10.82.0.0/29".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let mut ids = Vec::new();
    let mut students = Vec::new();
    for i in 0..6 {
        let s = f.user(&format!("q{i}"), Role::Student);
        ids.push(f.request_and_approve(&s, &staff));
        students.push(s);
    }
    let jobs = f.run_jobs(|_| {});
    for id in &ids[..5] {
        f.wait_for(*id, State::Running, 20).await;
    }
    let waiting = f.wait_for(ids[5], State::Queued, 10).await;
    let place = f
        .ctx
        .db
        .read(|c| slices::slices::queue_position(c, &waiting))
        .unwrap();
    assert_eq!(place, 1);
    // Waiting is not failing: the job is queued (or briefly looking again), its tries unspent.
    let waiting = f.count(&format!(
        "SELECT count(*) FROM jobs WHERE slice_id = {} AND state IN ('queued', 'running') AND attempts <= 1",
        ids[5]
    ));
    assert_eq!(waiting, 1, "waiting is not failing");

    let freed = f.slice(ids[2]).ip.unwrap();
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &students[2], ids[2], JobKind::Destroy, ""))
        .unwrap();
    jobs.runner.wake();
    let s = f.wait_for(ids[5], State::Running, 20).await;
    assert_eq!(s.ip.unwrap(), freed, "the freed address is reused");
    assert_eq!(f.nodes[0].containers(), 5);
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_answers_wrongly_is_retried_with_back_off_then_failed_for_staff_to_see() {
    let f = fleet(1, |_| "10.83.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    // Learn the node's state while it is up, then put an impostor in its place: an agent
    // whose certificate is not from the master's CA (every attempt fails at TLS).
    let jobs = f.run_jobs(|c| c.max_attempts = 3);
    f.wait_for_health_checks(10).await;
    jobs.stop().await;
    f.nodes[0].kill();
    let other_ca = Ca::open_or_create(&f.dir.path().join("other-ca")).unwrap();
    let impostor = start_agent(f.dir.path(), &other_ca, "node0", "10.83.0.0/24", 0).await;
    f.ctx
        .db
        .write(|tx| {
            tx.execute("UPDATE nodes SET address = ?1", [impostor.address.as_str()])?;
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();

    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|c| {
        c.max_attempts = 3;
        c.health_secs = 3600; // keep the node "recently seen" for this test
    });
    // The provisioning fails for good, as it should: that job is meant to stay failed.
    jobs.expect_leftovers();
    let s = f.wait_for(id, State::Failed, 30).await;
    assert!(s.failure.contains("create_env"), "{}", s.failure);
    // Staff get the command log by mail; the student a plain note.
    let outbox = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 50, 0))
        .unwrap()
        .0;
    let staff_mail = outbox
        .iter()
        .find(|m| m.kind == "provisioning_failed_staff")
        .expect("staff told");
    assert_eq!(staff_mail.to_addr, "tess@example.edu");
    let site = f.ctx.site();
    let text = slices::mail::render(
        slices::mail::Kind::ProvisioningFailedStaff,
        &staff_mail.data,
        &site,
    )
    .unwrap()
    .text;
    assert!(text.contains("create_env -> "), "{text}");
    assert!(outbox
        .iter()
        .any(|m| m.kind == "provisioning_failed" && m.to_addr == "alice@example.edu"));
    let job = f
        .ctx
        .db
        .read(|c| slices::jobs::queue::list(c, Some("failed"), 10))
        .unwrap()
        .into_iter()
        .find(|j| j.slice_id == Some(id))
        .expect("the failed job is listed");
    assert_eq!(job.attempts, 3);
    assert!(!job.last_error.is_empty());
    let events: Vec<String> = f
        .ctx
        .db
        .read(|c| slices::slices::events(c, id, 20))
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    // (The clean-up that follows a failure meets the impostor too: its own tries are apart.)
    let retries: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("trying again in") && e.contains("(create_env"))
        .collect();
    assert_eq!(retries.len(), 2, "{events:?}");
    // Back-off: the waits grow (1 s, then about 2 s).
    let log = f
        .ctx
        .db
        .read(|c| slices::records::agent_log::command_log(c, Some(job.id), None, 10))
        .unwrap();
    assert_eq!(log.len(), 3, "three attempts, each logged");
    assert!(
        log.iter().all(|l| l.code.is_none()),
        "no answer from the impostor"
    );
    let gaps: Vec<i64> = log.windows(2).map(|w| w[0].at - w[1].at).collect();
    assert!(
        gaps[0] >= gaps[1],
        "the second wait is not shorter: {gaps:?}"
    );
    jobs.stop().await;
}

/// A node that does not answer (down, rebooting) holds its jobs without spending their
/// attempts, however long; when it answers again they go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_holds_its_jobs_and_they_go_on_when_it_is_back() {
    let f = fleet(1, |_| "10.83.1.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|c| c.max_attempts = 2);
    f.wait_for_health_checks(10).await;
    jobs.stop().await;
    let address = f.nodes[0].address.clone();
    f.nodes[0].kill();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let id = f.request_and_approve(&alice, &staff);
    // The node stays "recently seen" (placed on it, then it is down); its health checks go on
    // every second, and the one that finds it back wakes the job that waits for it.
    let jobs = f.run_jobs(|c| {
        c.max_attempts = 2;
        c.node_stale_secs = 3600;
    });
    // Longer than two attempts with back-off would take: still waiting, nothing spent.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(7) {
        let s = f.slice(id);
        assert_ne!(
            s.state,
            State::Failed,
            "failed while the node was down: {}",
            s.failure
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let job = f
        .ctx
        .db
        .read(|c| slices::jobs::queue::list(c, None, 20))
        .unwrap()
        .into_iter()
        .find(|j| j.slice_id == Some(id) && j.kind == "provision")
        .expect("the provision job");
    assert!(
        job.attempts <= 1,
        "attempts spent while down: {}",
        job.attempts
    );
    assert!(
        job.last_error.contains("waiting for the node to answer"),
        "{}",
        job.last_error
    );

    // The node comes back on its address, with its state: the slice runs.
    let _back = start_agent_on(f.dir.path(), &f.ca, "node0", "10.83.1.0/24", 0, &address).await;
    f.wait_for(id, State::Running, 20).await;
    assert_eq!(f.failure_mails(), 0, "nobody was told it failed");
    jobs.stop().await;
}

/// A provision that fails for good gives back what it took on its node: the container (made
/// or half-made), its address and its container id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_that_fails_for_good_gives_back_what_it_took() {
    use slices::slave_link::Command;
    let f = fleet(1, |_| "10.83.2.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    // Container 101 (the first id the master gives) was made on the node behind its back, with
    // another spec: the master's create_env is refused for good (a conflict).
    let mut node = crate::jobs::reconcile::behind_the_back(&f).await;
    let other = crate::link::helpers::spec(101, "10.83.2.200");
    let r = node
        .call(&Command::CreateEnv(Box::new(other)))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|c| c.reconcile_secs = 0);
    jobs.expect_leftovers(); // the failed provision stays failed, for staff to see
    let s = f.wait_for(id, State::Failed, 20).await;
    assert!(s.failure.contains("create_env"), "{}", s.failure);
    let start = std::time::Instant::now();
    while f.slice(id).veid.is_some() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "its place was not given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let s = f.slice(id);
    assert_eq!((s.node_id, s.ip.as_deref()), (None, None));
    assert_eq!(s.state, State::Failed, "still failed, for staff to retry");
    assert_eq!(f.nodes[0].containers(), 0, "nothing left on the node");
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM jobs WHERE kind = 'release' AND slice_id = {id} AND state = 'succeeded'"
        )),
        1
    );
    jobs.stop().await;
}

/// Queueing a job wakes the loop at once: with the loop's own tick an hour long, an approval
/// (which only writes rows) still becomes a running slice, and a stop made later (by another
/// writer, not the runner) is carried out, with nobody calling `wake`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_a_job_wakes_the_loop() {
    let f = fleet(1, |_| "10.80.9.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|c| {
        c.tick = std::time::Duration::from_secs(3600);
        c.health_secs = 3600;
    });
    // Let the loop finish its first round and fall asleep.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let id = f.request_and_approve(&alice, &staff);
    f.wait_for(id, State::Running, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, JobKind::Stop, ""))
        .unwrap();
    f.wait_for(id, State::Stopped, 10).await;
    jobs.stop().await;
}

/// The harness itself: a loop whose test leaves a job failed fails the test, unless the test
/// said so; draining waits for the queue to empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_leaves_a_job_failed_is_told() {
    let f = fleet(1, |_| "10.80.8.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let jobs = f.run_jobs(|_| {});
    let id = f.request_and_approve(&alice, &staff);
    jobs.drain(20).await;
    assert_eq!(f.slice(id).state, State::Running, "drained means done");
    assert!(jobs.leftovers().is_empty());
    // A job that fails for good (its slice is gone from under it) is a leftover...
    f.ctx
        .db
        .write(|tx| {
            slices::records::jobs::enqueue(tx, JobKind::Limits, id, None, None)?;
            tx.execute("UPDATE jobs SET state = 'failed' WHERE kind = 'limits'", [])?;
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    assert_eq!(jobs.leftovers().len(), 1, "{:?}", jobs.leftovers());
    // ... and dropping the loop without saying so fails the test.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(jobs)));
    assert!(dropped.is_err(), "the leftover was not reported");
}

/// The outage: the node's agent goes down in the middle of 20 provisions and stays
/// down ten minutes (`TEST_SLICES_OUTAGE_SECS` shortens it by hand). Nothing fails, no try is
/// spent while it is down, staff and students read "waiting for node node0", and when it
/// answers again all 20 run, with one container each and nothing left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_minute_outage_amid_twenty_provisions_loses_nothing() {
    use crate::http::browser;
    use std::time::{Duration, Instant};
    let outage: u64 = std::env::var("TEST_SLICES_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let f = fleet(1, |_| "10.83.3.0/24".into(), 250).await;
    let staff = f.user("tess", Role::Staff);
    let students: Vec<_> = (0..20)
        .map(|i| f.user(&format!("o{i:02}"), Role::Student))
        .collect();
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let ids: Vec<i64> = students
        .iter()
        .map(|s| f.request_and_approve(s, &staff))
        .collect();
    let jobs = f.run_jobs(|c| c.per_node = 4);
    let running = "SELECT count(*) FROM slices WHERE state = 'running'";
    let start = Instant::now();
    while f.count(running) < 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "5 running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let address = f.nodes[0].address.clone();
    f.nodes[0].kill();
    let before = f.count(running);
    assert!(
        before < 20,
        "the outage comes amid the provisions: {before} ran"
    );

    // Down: nothing fails and, once the commands cut short are behind, no try is spent. A
    // job taken at the moment of reading has its try counted already (`claim`) and given back
    // if it then waits for the node (`wait`): a try in flight is not yet spent either way.
    let attempts = |f: &Fleet| -> Vec<(i64, i64)> {
        f.ctx
            .db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT id, attempts - (state = 'running') FROM jobs WHERE kind = 'provision'
                      ORDER BY id",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok::<_, slices::error::Error>(rows)
            })
            .unwrap()
    };
    let down = Instant::now();
    let settle = Duration::from_secs(outage.min(30));
    let mut after_settle = None;
    let mut pages_checked = false;
    while down.elapsed() < Duration::from_secs(outage) {
        let failed = f.count("SELECT count(*) FROM slices WHERE state = 'failed'");
        assert_eq!(failed, 0, "a slice failed while its node was down");
        if after_settle.is_none() && down.elapsed() >= settle {
            after_settle = Some(attempts(&f));
        }
        if !pages_checked && down.elapsed() >= Duration::from_secs(outage.min(15)) {
            // Staff see which node the jobs wait for; so does the owner of a waiting slice.
            let tess = browser();
            crate::http::log_in(&tess, &base, "tess").await;
            let page = tess
                .get(format!("{base}/staff/jobs?state=queued"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(page.contains("waiting for node node0"), "{page}");
            let waiting = ids
                .iter()
                .position(|id| f.slice(*id).state != State::Running)
                .unwrap();
            let owner = browser();
            crate::http::log_in(&owner, &base, &format!("o{waiting:02}")).await;
            let status: serde_json::Value = owner
                .get(format!("{base}/slices/{}/status", ids[waiting]))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let pending = status["pending"].as_str().unwrap_or_default();
            assert!(pending.starts_with("Waiting for node node0"), "{status}");
            pages_checked = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(pages_checked);
    let settled = after_settle.unwrap();
    assert_eq!(settled.len(), 20, "one provision job per slice");
    assert_eq!(
        attempts(&f),
        settled,
        "tries were spent while the node was down"
    );

    // Back on its address with its state: all 20 run, each in one container, none left over.
    let back = start_agent_on(f.dir.path(), &f.ca, "node0", "10.83.3.0/24", 250, &address).await;
    for id in &ids {
        f.wait_for(*id, State::Running, 120).await;
    }
    assert_eq!(
        back.containers(),
        20,
        "one container per slice, none left over"
    );
    assert_eq!(f.failure_mails(), 0, "nobody was told it failed");
    jobs.stop().await;
    handle.stop(false).await;
}

/// A node that does not answer costs nothing while it is down: its queued jobs (here 100 key
/// updates, as a new hop key queues for every slice) wait for it without being tried, where
/// each used to try every five seconds; the health check that finds it back wakes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_of_a_node_that_is_down_wait_without_trying_and_all_go_on_when_it_is_back() {
    use slices::jobs::JobKind;
    use std::time::{Duration, Instant};
    let f = fleet(1, |_| "10.83.4.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|c| c.node_stale_secs = 3600);
    f.wait_for(id, State::Running, 20).await;
    jobs.drain(20).await;
    let node_id = f.slice(id).node_id.unwrap();
    let address = f.nodes[0].address.clone();
    f.nodes[0].kill();
    let start = Instant::now();
    while f.count("SELECT count(*) FROM nodes WHERE last_error IS NOT NULL") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the node found down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tried = |f: &Fleet| f.count("SELECT count(*) FROM agent_log WHERE command = 'set_keys'");
    let before = tried(&f);
    f.ctx
        .db
        .write(|tx| {
            for _ in 0..100 {
                slices::jobs::enqueue(tx, JobKind::Keys, id, Some(alice.id), Some(node_id))?;
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    // Longer than the five seconds each used to wait between tries.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        tried(&f) - before,
        0,
        "keys jobs tried while the node was down"
    );
    let waiting = "SELECT count(*) FROM jobs WHERE kind = 'keys' AND state = 'queued'
                    AND last_error LIKE 'waiting for the node to answer%'";
    assert_eq!(f.count(waiting), 100);

    let _back = start_agent_on(f.dir.path(), &f.ca, "node0", "10.83.4.0/24", 0, &address).await;
    let start = Instant::now();
    while f.count("SELECT count(*) FROM jobs WHERE kind = 'keys' AND state = 'succeeded'") < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "all keys jobs done once the node is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tried(&f) - before,
        100,
        "each tried once, when the node was back"
    );
    jobs.stop().await;
}
