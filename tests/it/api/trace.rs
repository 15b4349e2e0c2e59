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
