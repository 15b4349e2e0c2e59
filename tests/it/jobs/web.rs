//! Through the pages, with real agents behind: a student asks, staff approve, and the
//! dashboard's status answer goes to "running" on its own and shows how to connect.

use std::time::{Duration, Instant};

use slices::domain::Role;

use crate::fleet::*;
use crate::http::{browser, form};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_request_to_running() {
    let f = fleet(1, |_| "10.85.0.0/24".into(), 200).await;
    f.user("tess", Role::Staff);
    f.user("alice", Role::Student);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});

    let alice = browser();
    crate::http::log_in(&alice, &base, "alice").await;
    let status = form(
        &alice,
        &base,
        "/request",
        "/request",
        &[("template", TEMPLATE), ("course", "CS 3650")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let id = f
        .ctx
        .db
        .read(|c| slices::slices::in_state(c, slices::slices::State::Requested))
        .unwrap()[0]
        .id;

    // What the dashboard's script listens to: the card's events as they happen, from the
    // request on. Another student may not listen to it.
    let bob = browser();
    f.user("bob", Role::Student);
    crate::http::log_in(&bob, &base, "bob").await;
    let theirs = bob
        .get(format!("{base}/slices/{id}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), reqwest::StatusCode::NOT_FOUND);
    let live = alice
        .get(format!("{base}/slices/{id}/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let heard = tokio::spawn(async move {
        use futures_util::StreamExt;
        let (mut body, mut text, mut events) = (live.bytes_stream(), String::new(), Vec::new());
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(data) = block.strip_prefix("data: ") {
                    events.push((
                        Instant::now(),
                        serde_json::from_str::<serde_json::Value>(data.trim()).unwrap(),
                    ));
                }
            }
        }
        events
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let tess = browser();
    crate::http::log_in(&tess, &base, "tess").await;
    let approved_at = Instant::now();

    let status = form(
        &tess,
        &base,
        "/staff/requests",
        &format!("/staff/requests/{id}/approve"),
        &[("node", "")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);

    // What the dashboard's script polls: the steps go by, then running.
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let s = crate::http::slice_status(&alice, &base, id).await;
        let state = s["state"].as_str().unwrap().to_string();
        if state == "provisioning" {
            let p = s["progress"].as_u64().expect("progress while provisioning");
            assert!((10..100).contains(&p), "{s}");
        }
        if state == "running" {
            assert!(s["progress"].is_null(), "no progress bar once running");
        }
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        if state == "running" {
            assert_eq!(s["busy"], false);
            assert!(s["ip"].as_str().unwrap().starts_with("10.85.0."));
            break;
        }
        assert!(start.elapsed().as_secs() < 20, "stuck: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.contains(&"provisioning".to_string()), "{seen:?}");
    // The stream said each change as it came and ended by itself once the slice ran.
    let events = tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .expect("the live stream ends once nothing is in flight")
        .unwrap();
    let states: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"requested"), "{states:?}");
    assert_eq!(states.last(), Some(&"running"), "{states:?}");
    assert!(states.contains(&"provisioning"), "{states:?}");
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|(_, e)| e["progress"].as_u64())
        .collect();
    assert!(
        progress.len() >= 2 && progress.windows(2).all(|w| w[0] <= w[1]),
        "the bar moves with the steps: {progress:?}"
    );
    let (first_change, _) = events
        .iter()
        .find(|(_, e)| e["state"] != "requested")
        .unwrap();
    assert!(
        first_change.duration_since(approved_at) < Duration::from_secs(2),
        "approval shows at once, not at the next poll"
    );
    assert_eq!(events.last().unwrap().1["busy"], false);

    let home = crate::http::page(&alice, &format!("{base}/")).await;
    assert!(home.contains("ssh -p 2222 alice@localhost"), "{home}");
    // A copy button carries the command whole, with no prompt.
    assert!(
        home.contains("data-copy=\"ssh -p 2222 alice@localhost\""),
        "{home}"
    );
    let port = base.rsplit(':').next().unwrap();
    assert!(
        home.contains(&format!("alice.slices.localhost:{port}")),
        "the web address carries the master's port (its built-in web gateway): {home}"
    );
    // Its node is the simulator: the card and the ready mail say that nothing is behind it.
    assert!(
        home.contains("This slice is <strong>simulated</strong>"),
        "{home}"
    );
    let ready: String = f
        .ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(c.query_row(
                "SELECT data FROM outbox WHERE kind = 'slice_ready'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let text = slices::mail::render(slices::mail::Kind::SliceReady, &ready, &f.ctx.site())
        .unwrap()
        .text;
    assert!(text.contains("this slice is simulated"), "{text}");
    // Its web address on the master's own port (the built-in web gateway): a simulated slice
    // has no web server, and says so; an unknown name is not found; the master's pages are
    // the master's.
    let by_host = |host: &'static str| {
        let base = base.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/"))
                .header(reqwest::header::HOST, host)
                .send()
                .await
                .unwrap();
            let csp = r.headers().contains_key("content-security-policy");
            (r.status().as_u16(), csp, r.text().await.unwrap())
        }
    };
    let (status, csp, body) = by_host("alice.slices.localhost:8080").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("simulated slice"), "{body}");
    assert!(
        !csp,
        "a slice's answer carries none of the master's page headers"
    );
    let (status, _, body) = by_host("nobody.slices.localhost").await;
    assert_eq!(status, 404);
    assert!(body.contains("No slice serves nobody here"), "{body}");
    let (status, csp, body) = by_host("127.0.0.1").await;
    assert_eq!(status, 200);
    assert!(csp && body.contains("Slices"), "the master's own page");
    // Staff see the command log of the slice.
    let detail = tess
        .get(format!("{base}/staff/slices/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("create_env") && detail.contains("start_env"),
        "{detail}"
    );
    // Nodes: health and capacity; draining keeps new slices away, and is audited.
    let nodes = tess
        .get(format!("{base}/staff/nodes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        nodes.contains("node0") && nodes.contains("answering") && nodes.contains("simulated"),
        "{nodes}"
    );
    let status = form(
        &tess,
        &base,
        "/staff/nodes",
        "/staff/nodes/node0/drain",
        &[],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let node = f
        .ctx
        .db
        .read(|c| slices::nodes::by_name(c, "node0"))
        .unwrap()
        .unwrap();
    assert!(node.draining);
    // Jobs: the provisioning job, with the commands it sent; the routine checks only when
    // asked for.
    f.ctx
        .db
        .write(|tx| {
            slices::jobs::queue::enqueue_for_node(tx, slices::jobs::JobKind::NodeHealth, node.id, 0)
        })
        .unwrap();
    let all = crate::http::page(&tess, &format!("{base}/staff/jobs?routine=true")).await;
    assert!(all.contains("<td>node_health</td>"), "{all}");
    let list = tess
        .get(format!("{base}/staff/jobs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("provision") && list.contains("succeeded"),
        "{list}"
    );
    assert!(!list.contains("<td>node_health</td>"), "{list}");
    assert!(list.contains("routine check"), "{list}");
    let job = f
        .ctx
        .db
        .read(|c| slices::jobs::queue::list(c, Some("succeeded"), 50))
        .unwrap();
    let provision = job.iter().find(|j| j.kind == "provision").unwrap();
    let page = tess
        .get(format!("{base}/staff/jobs/{}", provision.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("create_env"), "{page}");
    // Students see none of it.
    assert_eq!(
        alice
            .get(format!("{base}/staff/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        reqwest::StatusCode::FORBIDDEN
    );
    assert_eq!(
        alice
            .get(format!("{base}/staff/jobs"))
            .send()
            .await
            .unwrap()
            .status(),
        reqwest::StatusCode::FORBIDDEN
    );
    // Cards are kept between views (src/web/pieces.rs), never across what they show: the same
    // view gives the same page; a second browser of alice's gets her card with its own form
    // token (and its stop form is accepted with it); once stopped, the card says so.
    let home = crate::http::page(&alice, &format!("{base}/")).await;
    assert_eq!(crate::http::page(&alice, &format!("{base}/")).await, home);
    let alice2 = browser();
    crate::http::log_in(&alice2, &base, "alice").await;
    let home2 = crate::http::page(&alice2, &format!("{base}/")).await;
    let stop_token = |page: &str| {
        let form = page
            .split(&format!("action=\"/slices/{id}/stop\""))
            .nth(1)
            .expect("a stop form");
        let value = form.split("name=\"csrf\" value=\"").nth(1).unwrap();
        value[..value.find('"').unwrap()].to_string()
    };
    let (first, second) = (stop_token(&home), stop_token(&home2));
    assert_ne!(first, second, "each browser's card has its own token");
    // The same token as the page's own log-out form.
    assert!(home2.matches(&second).count() > 1, "{home2}");
    let stopped = alice2
        .post(format!("{base}/slices/{id}/stop"))
        .form(&[("csrf", second.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.status(), reqwest::StatusCode::SEE_OTHER);
    crate::http::wait_status(&alice, &base, id, "stopped", 20).await;
    let after = crate::http::page(&alice, &format!("{base}/")).await;
    assert!(
        after.contains(r#"<span class="badge state-stopped" data-field="state">stopped</span>"#),
        "{after}"
    );
    assert!(!after.contains("state-running"), "{after}");
    jobs.stop().await;
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_move_a_slice_to_another_node_after_a_typed_confirmation() {
    let f = fleet(2, |i| format!("10.87.{i}.0/24"), 50).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let before = f.wait_for(id, slices::slices::State::Running, 20).await;
    let from = before.node_id.unwrap();
    let (old, new) = if from == 1 { (0, 1) } else { (1, 0) };
    let target = format!("node{new}");
    assert_eq!(f.nodes[old].containers(), 1);

    let tess = browser();
    crate::http::log_in(&tess, &base, "tess").await;
    let page = tess
        .get(format!("{base}/staff/slices/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("its /home is carried over"), "{page}");
    // Without the typed name nothing happens.
    let detail = format!("/staff/slices/{id}");
    let move_to = format!("/staff/slices/{id}/move");
    form(
        &tess,
        &base,
        &detail,
        &move_to,
        &[("node", &target), ("confirm", "nope")],
    )
    .await;
    assert_eq!(f.slice(id).state, slices::slices::State::Running);
    assert_eq!(f.slice(id).node_id, Some(from));
    // With it, the slice is made anew on the other node and the old container goes.
    let status = form(
        &tess,
        &base,
        &detail,
        &move_to,
        &[("node", &target), ("confirm", "alice")],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    let start = Instant::now();
    let after = loop {
        let s = f.slice(id);
        // Running at its new place, and the move done (the old container removed).
        let moving = f.count(&format!("SELECT count(*) FROM moves WHERE slice_id = {id}"));
        if s.state == slices::slices::State::Running && s.node_id != Some(from) && moving == 0 {
            break s;
        }
        assert!(start.elapsed().as_secs() < 20, "not moved: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(after
        .ip
        .as_deref()
        .unwrap()
        .starts_with(&format!("10.87.{new}.")));
    assert_eq!(f.nodes[old].containers(), 0, "the old container is removed");
    assert_eq!(f.nodes[new].containers(), 1);
    // The gateway follows: the login shell and map point at the new address.
    let ip = after.ip.unwrap();
    let users = f.ctx.config.data.join("gateway/home/users");
    let start = Instant::now();
    while !std::fs::read_to_string(users.join("alice.sh"))
        .unwrap_or_default()
        .contains(&format!("alice@{ip}"))
    {
        assert!(
            start.elapsed().as_secs() < 10,
            "the gateway still points at the old address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let map =
        std::fs::read_to_string(f.ctx.config.data.join("gateway/etc/apache2/openvz.map")).unwrap();
    assert!(map.contains(&format!("alice {ip}")), "{map}");
    jobs.stop().await;
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_change_a_slice_s_plan_and_the_node_puts_it_in_force() {
    let f = fleet(1, |_| "10.89.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);
    let large = f
        .ctx
        .db
        .write(|tx| {
            tx.execute(
                "INSERT INTO plans (name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares)
                 VALUES ('large', 1024, 2048, 500, 0, 2048)",
                [],
            )?;
            Ok::<_, slices::error::Error>(tx.last_insert_rowid())
        })
        .unwrap();
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let s = f.wait_for(id, slices::slices::State::Running, 20).await;
    let tess = browser();
    crate::http::log_in(&tess, &base, "tess").await;
    let detail = format!("/staff/slices/{id}");
    let status = form(
        &tess,
        &base,
        &detail,
        &format!("/staff/slices/{id}/plan"),
        &[("plan", &large.to_string())],
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER);
    f.wait_count(
        &format!("SELECT count(*) FROM jobs WHERE kind = 'limits' AND slice_id = {id} AND state = 'succeeded'"),
        1,
        20,
    )
    .await;
    // The agent holds the new limits for the container.
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            f.nodes[0]
                .state
                .join(format!("envs/{}.json", s.veid.unwrap())),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(spec["limits"]["memory_limit_mb"], 2048);
    assert_eq!(spec["limits"]["processes"], 500);
    let page = tess
        .get(format!("{base}{detail}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("New limits in force: memory 1024 MB (at most 2048 MB)"),
        "{page}"
    );
    jobs.stop().await;
    handle.stop(false).await;
}
