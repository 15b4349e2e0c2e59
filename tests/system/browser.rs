//! The whole flow in a real browser (headless Chromium through chromedriver): sign up,
//! confirm the address, ask for a slice, staff approve, and the student's dashboard reaches
//! "running" without a reload and shows the ssh command. Screenshots of the main pages go to
//! target/screenshots/.

use crate::{system, webdriver};

use std::path::PathBuf;

use crate::fleet::*;
use slices::domain::Role;

fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots")
        .join(format!("{name}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_request_approve_and_watch_it_run() {
    let Some(_alone) = system::alone("browser test").await else {
        return;
    };
    // Each simulated step takes 1 s, so that "Stopping…" is there to be seen.
    let f = fleet(1, |_| "10.86.0.0/24".into(), 1000).await;
    f.user("tess", Role::Staff);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    let driver = webdriver::Driver::start();

    // A student signs up.
    let alice = driver.session(1200, 900).await;
    alice.go(&format!("{base}/signup")).await;
    alice.screenshot(&shot("signup")).await;
    alice.fill("#username", "alice").await;
    alice.fill("#email", "alice@example.edu").await;
    alice.fill("#display_name", "Alice Liddell").await;
    alice.fill("#password", "correct horse battery").await;
    alice
        .fill("#password_confirm", "correct horse battery")
        .await;
    alice.click("main form button[type=submit]").await;
    alice
        .wait_text("main", 10, |t| {
            t.contains("Please confirm your email address")
        })
        .await;

    // She follows the link in her mail (taken from the outbox, as the mail would carry it).
    let token = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 10, 0))
        .unwrap()
        .0
        .into_iter()
        .find(|m| m.kind == "verify_email")
        .unwrap()
        .data["token"]
        .as_str()
        .unwrap()
        .to_string();
    alice.go(&format!("{base}/verify/{token}")).await;
    alice.click("main form[action^='/verify'] button").await;
    alice
        .wait_text("main", 10, |t| t.contains("is confirmed"))
        .await;

    // She asks for a slice.
    alice.go(&format!("{base}/request")).await;
    alice.screenshot(&shot("request")).await;
    alice.fill("#course", "CS 3650").await;
    alice.click("main form button[type=submit]").await;
    alice.wait_url(&format!("{base}/"), 10).await;
    let state = alice.text("[data-field=state]").await;
    assert_eq!(state, "requested");
    // The page is marked, so a reload would show: it must not reload from here on.
    alice.script("window.__noReload = true; return true;").await;

    // Staff approve in their own browser.
    let tess = driver.session(1200, 900).await;
    tess.go(&format!("{base}/login")).await;
    tess.fill("#login", "tess").await;
    tess.fill("#password", "correct horse battery").await;
    tess.click("main form button[type=submit]").await;
    tess.wait_url(&format!("{base}/"), 10).await;
    tess.go(&format!("{base}/staff/requests")).await;
    tess.screenshot(&shot("staff-requests")).await;
    tess.click("main form[action$='/approve'].row button").await;
    tess.wait_text("main", 10, |t| t.contains("Approved slice"))
        .await;

    // Alice's dashboard follows on its own: provisioning, then running, with the ssh command.
    alice
        .wait_text("[data-field=state]", 30, |t| {
            t == "provisioning" || t == "running"
        })
        .await;
    alice
        .wait_text("[data-field=state]", 30, |t| t == "running")
        .await;
    assert_eq!(
        alice.script("return window.__noReload === true;").await,
        serde_json::json!(true),
        "no reload happened"
    );
    assert!(
        alice.displayed("[data-show-when=running]").await,
        "the connection box shows"
    );
    let connect = alice.text("[data-show-when=running]").await;
    assert!(connect.contains("ssh -p 2222 alice@localhost"), "{connect}");
    // Its copy button answers where it was pressed.
    alice.click("button[data-copy]").await;
    alice
        .wait_text("button[data-copy]", 5, |t| {
            t == "Copied" || t == "Select and copy"
        })
        .await;
    assert!(alice.text("[data-field=ip]").await.starts_with("10.86.0."));
    alice.screenshot(&shot("dashboard-running")).await;

    // Alice stops it: the card says "Stopping…" with its buttons waiting, then shows it
    // stopped with Start ready, without another reload.
    // (The dashboard's address does not change: the new page is known by a mark the old
    // one had and it has not.)
    alice
        .script("window.__beforeStop = true; return true;")
        .await;
    alice.click("main form[action$='/stop'] button").await;
    let start = std::time::Instant::now();
    while alice
        .script("return window.__beforeStop === true || document.readyState !== 'complete';")
        .await
        == serde_json::json!(true)
    {
        assert!(start.elapsed().as_secs() < 10, "the stop's page never came");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    alice.script("window.__noReload = true; return true;").await;
    assert_eq!(alice.text("[data-field=pending]").await, "Stopping…");
    assert_eq!(
        alice
            .script(
                "return document.querySelector(\"main form[action$='/stop'] button\").disabled;"
            )
            .await,
        serde_json::json!(true),
        "Stop waits while it stops"
    );
    alice
        .wait_text("[data-field=state]", 30, |t| t == "stopped")
        .await;
    assert!(alice.displayed("main form[action$='/start'] button").await);
    assert_eq!(
        alice
            .script(
                "return document.querySelector(\"main form[action$='/start'] button\").disabled;"
            )
            .await,
        serde_json::json!(false),
        "Start is ready"
    );
    assert!(!alice.displayed("[data-field=pending]").await);
    assert_eq!(
        alice.script("return window.__noReload === true;").await,
        serde_json::json!(true),
        "no reload happened"
    );
    alice.click("main form[action$='/start'] button").await;
    alice.wait_url(&format!("{base}/"), 10).await;
    alice
        .wait_text("[data-field=state]", 30, |t| t == "running")
        .await;

    // No key yet: the dashboard says so; alice adds hers and her gateway login takes it.
    assert!(alice
        .text("[data-show-when=running]")
        .await
        .contains("SSH keys"));
    alice.click("nav a[href='/keys']").await;
    alice.wait_url(&format!("{base}/keys"), 10).await;
    alice.fill("#key", "not a key").await;
    alice.click("main form[action='/keys'] button").await;
    alice
        .wait_text("main", 10, |t| t.contains("That is not an SSH public key"))
        .await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m alice@laptop";
    alice.fill("#key", key).await;
    alice.click("main form[action='/keys'] button").await;
    alice
        .wait_text("main", 10, |t| t.contains("Key added"))
        .await;
    assert!(alice.text("main table").await.contains("alice@laptop"));
    alice.screenshot(&shot("keys")).await;
    // On a 390 px phone the keys page fits: nothing wider than the screen, Remove in reach.
    let phone = driver.session(500, 844).await;
    phone.as_phone(390, 844).await;
    phone.log_in(&base, "alice").await;
    phone.go(&format!("{base}/keys")).await;
    let fits = phone
        .script("return [document.documentElement.scrollWidth, window.innerWidth];")
        .await;
    assert_eq!(fits[1], 390, "the page is seen as a phone sees it");
    assert!(
        fits[0].as_u64() <= fits[1].as_u64(),
        "the keys page is wider than the phone: {fits}"
    );
    assert!(phone.displayed("a[href^='/keys/'][href$='/remove']").await);
    phone.screenshot(&shot("keys-390")).await;
    phone.close().await;
    let keys_file = f
        .ctx
        .config
        .data
        .join("gateway/home/users/alice/.ssh/authorized_keys");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&keys_file)
        .unwrap_or_default()
        .contains("alice@laptop")
    {
        assert!(
            start.elapsed().as_secs() < 15,
            "the gateway never got alice's key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for (page, name) in [
        ("/staff/gateway", "staff-gateway"),
        ("/staff/templates", "staff-templates"),
        ("/staff/plans", "staff-plans"),
        ("/staff/nodes/new", "staff-node-new"),
    ] {
        tess.go(&format!("{base}{page}")).await;
        tess.screenshot(&shot(name)).await;
    }
    tess.go(&format!("{base}/staff/gateway")).await;
    tess.click("main form[action='/staff/gateway/check'] button")
        .await;
    tess.wait_text("main", 10, |t| t.contains("What differs now"))
        .await;

    tess.go(&format!("{base}/staff/slices")).await;
    tess.screenshot(&shot("staff-slices")).await;
    tess.go(&format!("{base}/staff/nodes")).await;
    tess.screenshot(&shot("staff-nodes")).await;
    let phone = driver.session(500, 844).await;
    phone.as_phone(390, 844).await;
    phone.log_in(&base, "alice").await;
    phone.screenshot(&shot("dashboard-phone")).await;

    alice.close().await;
    tess.close().await;
    phone.close().await;
    jobs.stop().await;
    handle.stop(false).await;
}
