//! Requests and jobs in the log: each request runs inside a span with its own id, which the
//! response names (`X-Request-Id`) and a 500 page gives as the reference to quote; each job's
//! lines carry the job's id and kind. Through the real binary and its real log.

use crate::serve::Served;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_page_quotes_the_request_id_its_log_lines_carry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data, "info,slices=debug");
    let admin = served.first_admin("ada").await;

    // Every answer names its request, and no two the same.
    let audit = format!("{}/staff/audit", served.base);
    let ok = admin.get(&audit).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let first = ok.headers()["x-request-id"].to_str().unwrap().to_string();
    let again = admin.get(&audit).send().await.unwrap();
    let second = again.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(first.len(), 12);
    assert_ne!(first, second);

    // Break the audit table behind the master's back: the page fails on our side.
    rusqlite::Connection::open(data.join("slices.db"))
        .unwrap()
        .execute_batch("ALTER TABLE audit RENAME TO audit_gone")
        .unwrap();
    let broken = admin.get(&audit).send().await.unwrap();
    assert_eq!(broken.status(), 500);
    let id = broken.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let page = broken.text().await.unwrap();
    assert!(
        page.contains(&format!("this reference: {id}.")),
        "the page quotes the request id {id}: {page}"
    );
    assert!(!page.contains("audit_gone"), "no causes on the page");

    // The log has the cause under that id, and jobs' lines carry theirs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = served.log_text();
        let error_line = log
            .lines()
            .find(|l| l.contains("internal error") && l.contains(&id));
        let job_line = log
            .lines()
            .find(|l| l.contains("job{id=") && l.contains("kind="));
        if let (Some(e), Some(_)) = (error_line, job_line) {
            assert!(e.contains("request{id="), "{e}");
            assert!(e.contains("audit"), "the cause is logged: {e}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error line under {id} or no job line in the log:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Tokens never reach the log: the set-up, e-mail confirmation and password reset links are
/// logged with the token masked, on every path through them (a failed reset attempt too),
/// with everything logged (debug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_addresses_are_masked_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data, "debug");
    let setup = served.setup.rsplit('/').next().unwrap().to_string();
    served.first_admin("ada").await;
    let base = served.base.clone();

    // A student signs up (an e-mail confirmation link), and ada forgets her password.
    let student = crate::http::browser();
    let r = crate::http::form(
        &student,
        &base,
        "/signup",
        "/signup",
        &[
            ("username", "sam"),
            ("email", "sam@example.edu"),
            ("display_name", "Sam"),
            ("password", "correct horse battery"),
            ("password_confirm", "correct horse battery"),
        ],
    )
    .await;
    assert_eq!(r, 303);
    let anon = crate::http::browser();
    crate::http::form(&anon, &base, "/forgot", "/forgot", &[("login", "ada")]).await;
    // The tokens the messages carry, by the account they went to.
    let token_of = |user: &str| -> String {
        let db = rusqlite::Connection::open(data.join("slices.db")).unwrap();
        let data: String = db
            .query_row(
                "SELECT data FROM outbox WHERE json_extract(data, '$.user.username') = ?1",
                [user],
                |r| r.get(0),
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        v["token"].as_str().unwrap().to_string()
    };
    let (verify, reset) = (token_of("sam"), token_of("ada"));
    assert!(verify.len() >= 16 && reset.len() >= 16);

    // Each link opened; a reset that fails validation, then one that works.
    assert_eq!(
        anon.get(format!("{base}/verify/{verify}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let bad = crate::http::form(
        &anon,
        &base,
        &format!("/reset/{reset}"),
        &format!("/reset/{reset}"),
        &[("new_password", "short"), ("new_password_confirm", "other")],
    )
    .await;
    assert_eq!(bad, 422);
    let good = crate::http::form(
        &anon,
        &base,
        &format!("/reset/{reset}"),
        &format!("/reset/{reset}"),
        &[
            ("new_password", "a brand new passphrase"),
            ("new_password_confirm", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(good, 303);

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = served.log_text();
    for (what, token) in [
        ("set-up", &setup),
        ("confirmation", &verify),
        ("reset", &reset),
    ] {
        assert!(
            !log.contains(token.as_str()),
            "the {what} token is in the log"
        );
    }
    assert!(
        log.contains("/reset/[token]"),
        "reset requests are logged, masked"
    );
    assert!(log.contains("/setup/[token]"));
}
