//! The README's first command, as a newcomer runs it: `slices serve` on an empty folder, no
//! configuration. Through HTTP only: the first admin from the printed link, a student signs
//! up and asks, the admin approves, the slice runs on the built-in simulated node, the local
//! gateway holds the login shell and map line, and the "ready" mail is in the mail folder.

use std::time::{Duration, Instant};

use crate::http::{approve_first_request, confirmed_student, form, wait_status};
use crate::serve::Served;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_gives_the_whole_flow_with_nothing_installed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("slices-data");
    let served = Served::start(&data, "info");
    assert!(served.simulated, "it says the node is simulated");
    let base = served.base.clone();

    // The first admin, from the one-time link.
    let admin = served.first_admin("ada").await;

    // A student signs up; the admin confirms her address by hand (the mail is a file).
    let stu = confirmed_student(&admin, &base, "stu").await;

    // The request form offers the built-in demo template; she asks.
    let page = stu
        .get(format!("{base}/request"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("demo-simulated"), "{page}");
    let r = form(
        &stu,
        &base,
        "/request",
        "/request",
        &[
            ("template", "demo-simulated"),
            ("course", "CS 101"),
            ("purpose", "trying it"),
        ],
    )
    .await;
    assert_eq!(r, 303, "requested");

    // The admin approves it from the queue; her dashboard's status reaches running on node
    // `local`.
    let id = approve_first_request(&admin, &base).await;
    let status = wait_status(&stu, &base, id, "running", 30).await;
    assert_eq!(status["node"], "local", "{status}");
    let ip = status["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.99.0."), "{ip}");
    let nodes = admin
        .get(format!("{base}/staff/nodes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(nodes.contains("simulated"), "the node is marked simulated");

    // The local gateway holds her login shell and web address.
    let script = std::fs::read_to_string(data.join("gateway/home/users/stu.sh")).unwrap();
    assert!(script.contains(&format!("stu@{ip}")), "{script}");
    let map = std::fs::read_to_string(data.join("gateway/etc/apache2/openvz.map")).unwrap();
    assert!(map.contains(&format!("stu {ip}")), "{map}");

    // "Your slice is ready" arrives as a mail file.
    let start = Instant::now();
    loop {
        let ready = std::fs::read_dir(data.join("mail"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .any(|m| {
                        m.contains("To: Stu <stu@example.edu>")
                            && m.contains("ssh -p ")
                            && m.contains(" stu@localhost")
                    })
            })
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no ready mail");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_real_nodes_grows_no_built_in_node() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = slices::context::Context::open(crate::fleet::config(dir.path())).unwrap();
    ctx.db
        .write(|tx| {
            slices::nodes::add(
                tx,
                &slices::domain::NodeName::parse("node1").unwrap(),
                &slices::domain::NodeAddress::parse("10.0.0.1:7070").unwrap(),
            )
        })
        .unwrap();
    assert_eq!(ctx.config.embedded_agent, "sim", "the default");
    assert!(slices::embedded::start(&ctx).await.unwrap().is_none());
    let nodes = ctx.db.read(slices::nodes::list).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "node1");
    // On an empty master it starts, as node `local`.
    let dir = tempfile::tempdir().unwrap();
    let ctx = slices::context::Context::open(crate::fleet::config(dir.path())).unwrap();
    assert!(slices::embedded::start(&ctx).await.unwrap().is_some());
    assert_eq!(ctx.db.read(slices::nodes::list).unwrap()[0].name, "local");
}
