//! Mail through a real SMTP server (Debian's python3-aiosmtpd): messages arrive with the
//! right recipient, subject and links; the verification link works over HTTP; with the SMTP
//! server down a message is retried and delivered exactly once when it is back.

use crate::system;

use std::time::{Duration, Instant};

use crate::app::*;
use crate::smtp::Smtp;
use reqwest::StatusCode;
use slices::jobs::{JobRunner, RunnerConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn app_with_smtp(port: u16) -> (TestApp, tokio::sync::watch::Sender<bool>) {
    let app = spawn_with(move |c| {
        c.mail_transport = "smtp".into();
        c.smtp_host = "127.0.0.1".into();
        c.smtp_port = port;
        c.smtp_tls = "none".into();
        c.mail_retry_base_secs = 1;
        c.mail_from = "Slices Lab <lab@example.edu>".into();
    })
    .await;
    let mut cfg = RunnerConfig::from_config(&app.ctx.config).unwrap();
    cfg.tick = Duration::from_millis(100);
    let runner = JobRunner::new(app.ctx.clone(), cfg).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    actix_web::rt::spawn(runner.run(rx));
    (app, stop)
}

async fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed().as_secs() < secs,
            "{what} did not happen within {secs} s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn sign_up_mail_arrives_and_its_link_confirms_the_address() {
    if !system::enabled("mail test") {
        return;
    }
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(port, maildir.path());
    let (app, _stop) = app_with_smtp(port).await;
    let c = browser();
    let r = app
        .signup(&c, "zoe", "zoe@example.edu", "Zoë Ünïcode")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    wait_until(20, "the sign-up mail", || smtp.messages().len() == 1).await;
    let mail = smtp.messages().remove(0);
    assert!(
        mail.contains("To: =?utf-8?") || mail.contains("To: \"Zo"),
        "the name is encoded: {mail}"
    );
    assert!(mail.contains("<zoe@example.edu>"), "{mail}");
    assert!(
        mail.contains("From: \"Slices Lab\" <lab@example.edu>"),
        "{mail}"
    );
    assert!(
        mail.contains("Subject: Confirm your email address for Slices"),
        "{mail}"
    );
    assert!(mail.contains("Content-Type: text/html"), "an HTML part too");
    let start = mail
        .find(&format!("{}/verify/", app.base))
        .expect("a link to this site");
    let link: String = mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"')
        .collect();

    // Not confirmed yet: no slice requests.
    let user = app
        .ctx
        .db
        .read(|c| slices::accounts::users::by_username(c, "zoe"))
        .unwrap()
        .unwrap();
    assert!(user.email_verified_at.is_none());
    // Follow the link as the mail's reader does: a page with a button, then the button.
    let path = link.trim_start_matches(&app.base).to_string();
    let page = app.get(&c, &path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let r = app.post(&c, &path, &path, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let user = app
        .ctx
        .db
        .read(|c| slices::accounts::users::by_username(c, "zoe"))
        .unwrap()
        .unwrap();
    assert!(
        user.email_verified_at.is_some(),
        "the link confirmed the address"
    );
    let home = app.get(&c, "/").await.text().await.unwrap();
    assert!(!home.contains("Please confirm your email address"));
    // The link works once: zoe, confirmed, who opens it again is told it is done; anyone
    // else is refused.
    let again = app.get(&c, &path).await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    let home = app.get(&c, "/").await.text().await.unwrap();
    assert!(home.contains("is already confirmed."), "{home}");
    // (The page no longer shows a form to her: the token comes from her dashboard.)
    let r = app.post(&c, "/", &path, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let stranger = browser();
    let r = app.post(&stranger, &path, &path, &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.audit_count("email_verified", "zoe"), 1);
}

#[actix_web::test]
async fn with_the_smtp_server_down_a_message_waits_and_arrives_once() {
    if !system::enabled("mail test") {
        return;
    }
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let (app, _stop) = app_with_smtp(port).await;
    app.add_user("yan", slices::domain::Role::Student);
    // Nothing listens on the port yet: ask for a password reset.
    let c = browser();
    let r = app
        .post(&c, "/forgot", "/forgot", &[("login", "yan@example.edu")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let attempts = || {
        app.ctx
            .db
            .read(|c| slices::mail::list(c, None, 10, 0))
            .unwrap()
            .0
            .into_iter()
            .find(|m| m.kind == "password_reset")
            .map(|m| (m.attempts, m.state, m.last_error))
            .unwrap()
    };
    wait_until(20, "two failed tries", || attempts().0 >= 2).await;
    let (_, state, error) = attempts();
    assert_eq!(state, "queued", "a passing failure keeps it queued");
    assert!(!error.is_empty());

    let smtp = Smtp::start(port, maildir.path());
    wait_until(30, "the delivery", || smtp.messages().len() == 1).await;
    let mail = smtp.messages().remove(0);
    assert!(
        mail.contains("Subject: Reset your Slices password"),
        "{mail}"
    );
    assert!(mail.contains(&format!("{}/reset/", app.base)), "{mail}");
    wait_until(10, "the outbox to say sent", || attempts().1 == "sent").await;
    // And never again.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "delivered exactly once");

    // The reset link sets a new password and ends sessions.
    let start = mail.find(&format!("{}/reset/", app.base)).unwrap();
    let link: String = mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"')
        .collect();
    let path = link.trim_start_matches(&app.base).to_string();
    let new = "a brand new passphrase";
    let r = app
        .post(
            &c,
            &path,
            &path,
            &[("new_password", new), ("new_password_confirm", new)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login(&browser(), "yan", new).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.login(&browser(), "yan", PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Used up.
    assert_eq!(
        app.get(&browser(), &path).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[actix_web::test]
async fn staff_read_every_message_in_the_outbox_without_its_secrets() {
    let app = spawn_app().await; // the embedded default: the file transport
    app.add_user("ops", slices::domain::Role::Staff);
    let c = browser();
    app.signup(&c, "wen", "wen@example.edu", "Wen").await;
    let mut cfg = RunnerConfig::from_config(&app.ctx.config).unwrap();
    cfg.tick = Duration::from_millis(100);
    let runner = JobRunner::new(app.ctx.clone(), cfg).unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    actix_web::rt::spawn(runner.run(rx));
    let eml = app.ctx.config.data.join("mail");
    wait_until(10, "the .eml file", || {
        std::fs::read_dir(&eml)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    })
    .await;

    let staff = app.logged_in_as("ops").await;
    let page = app.get(&staff, "/staff/outbox").await.text().await.unwrap();
    assert!(
        page.contains("Confirm your email address for Slices"),
        "{page}"
    );
    assert!(page.contains("wen@example.edu"));
    let id = app
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 10, 0))
        .unwrap()
        .0
        .into_iter()
        .find(|m| m.kind == "verify_email")
        .unwrap()
        .id;
    let message = app
        .get(&staff, &format!("/staff/outbox/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        message.contains("verify&#x2F;(hidden)"),
        "the token is hidden from staff: {message}"
    );
    let student = browser();
    app.login(&student, "wen", PASSWORD).await;
    assert_eq!(
        app.get(&student, "/staff/outbox").await.status(),
        StatusCode::FORBIDDEN
    );
}
