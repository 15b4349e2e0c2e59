//! Through the pages, with real agents behind: a student asks, staff approve, and the
//! dashboard's status answer goes to "running" on its own and shows how to connect.

use std::time::{Duration, Instant};

use reqwest::Client;
use slices::domain::Role;

use crate::fleet::*;

async fn form(
    c: &Client,
    base: &str,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::StatusCode {
    let body = c
        .get(format!("{base}{page}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form") + marker.len();
    let token = &body[start..start + body[start..].find('"').unwrap()];
    let mut all = fields.to_vec();
    all.push(("csrf", token));
    c.post(format!("{base}{action}"))
        .header("Origin", base)
        .form(&all)
        .send()
        .await
        .unwrap()
        .status()
}

fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

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
    form(
        &alice,
        &base,
        "/login",
        "/login",
        &[("login", "alice"), ("password", "correct horse battery")],
    )
    .await;
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

    let tess = browser();
    form(
        &tess,
        &base,
        "/login",
        "/login",
        &[("login", "tess"), ("password", "correct horse battery")],
    )
    .await;
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
        let s: serde_json::Value = alice
            .get(format!("{base}/slices/{id}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let state = s["state"].as_str().unwrap().to_string();
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
    let home = alice
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("ssh alice@localhost"), "{home}");
    assert!(home.contains("alice.slices.localhost"));
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
    // Jobs: the provisioning job, with the commands it sent.
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
    jobs.stop().await;
    handle.stop(false).await;
}
