use reqwest::StatusCode;

use crate::app::*;

#[actix_web::test]
async fn signup_logs_in_and_logout_ends_the_session() {
    let app = spawn_app().await;
    let c = browser();
    let r = app
        .signup(&c, "alice", "alice@example.edu", "Alice Liddell")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    let home = app.get(&c, "/").await.text().await.unwrap();
    assert!(
        home.contains("Welcome, Alice Liddell."),
        "the notice is shown once after sign-up"
    );
    assert_eq!(app.whoami(&c).await.as_deref(), Some("alice"));
    let again = app.get(&c, "/").await.text().await.unwrap();
    assert!(
        !again.contains("Welcome, Alice Liddell."),
        "the notice is not shown twice"
    );
    assert_eq!(app.audit_count("signup", "alice"), 1);

    let r = app.post(&c, "/", "/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.whoami(&c).await, None);
    assert_eq!(app.audit_count("logout", "alice"), 1);
    // The account page now wants a log-in, and comes back afterwards.
    let r = app.get(&c, "/account").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?next=/account");
}

#[actix_web::test]
async fn login_by_username_or_email_and_wrong_password() {
    let app = spawn_app().await;
    app.add_user("bob", slices::domain::Role::Student);
    let c = browser();
    let r = app.login(&c, "bob@EXAMPLE.edu", PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "email log-in ignores case"
    );
    assert_eq!(app.whoami(&c).await.as_deref(), Some("bob"));

    let c2 = browser();
    let r = app.login(&c2, "Bob", PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "username log-in ignores case"
    );

    let c3 = browser();
    let r = app.login(&c3, "bob", "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("do not match an account"), "{body}");
    assert!(body.contains("value=\"bob\""), "what was typed is kept");
    assert!(
        !body.contains("wrong password!"),
        "the password is never echoed"
    );
    assert_eq!(app.whoami(&c3).await, None);
    assert_eq!(app.audit_count("login_failed", "bob"), 1);
    assert_eq!(app.audit_count("login", "bob"), 2);
}

#[actix_web::test]
async fn login_returns_to_the_page_asked_for_but_never_offsite() {
    let app = spawn_app().await;
    app.add_user("carol", slices::domain::Role::Student);
    let c = browser();
    let token = app.csrf(&c, "/login?next=/account").await;
    let r = c
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[
            ("login", "carol"),
            ("password", PASSWORD),
            ("next", "/account"),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/account");
    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let c = browser();
        let token = app.csrf(&c, "/login").await;
        let r = c
            .post(app.url("/login"))
            .header("Origin", &app.base)
            .form(&[
                ("login", "carol"),
                ("password", PASSWORD),
                ("next", evil),
                ("csrf", &token),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(location(&r), "/", "{evil}");
    }
}

#[actix_web::test]
async fn forms_without_a_valid_token_or_from_elsewhere_are_refused() {
    let app = spawn_app().await;
    app.add_user("dave", slices::domain::Role::Student);
    let c = browser();
    // No token at all.
    let _ = app.get(&c, "/login").await;
    let r = c
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[("login", "dave"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("This form has expired"));
    // A token taken from another browser (bound to its cookie, not ours).
    let other = browser();
    let stolen = app.csrf(&other, "/login").await;
    let r = c
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[("login", "dave"), ("password", PASSWORD), ("csrf", &stolen)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The right token, but the form was posted from another site.
    let token = app.csrf(&c, "/login").await;
    for (header, value) in [
        ("Origin", "https://evil.example"),
        ("Referer", "https://evil.example/x"),
    ] {
        let r = c
            .post(app.url("/login"))
            .header(header, value)
            .form(&[("login", "dave"), ("password", PASSWORD), ("csrf", &token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{header}");
    }
    assert_eq!(app.whoami(&c).await, None);
    assert_eq!(app.audit_count("login", "dave"), 0, "nothing ran");

    // Logged in, a token from before the log-in no longer works (it was bound to the old cookie).
    let c = app.logged_in_as("dave").await;
    let r = c
        .post(app.url("/logout"))
        .header("Origin", &app.base)
        .form(&[("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.whoami(&c).await.as_deref(), Some("dave"));
}

#[actix_web::test]
async fn failures_slow_the_address_that_failed_never_the_owner_elsewhere() {
    let app = spawn_with(|c| {
        c.login_max_failures_per_account = 3;
        c.login_max_failures_per_address = 6;
    })
    .await;
    app.add_user("erin", slices::domain::Role::Student);
    app.add_user("frank", slices::domain::Role::Student);
    // The owner logged in once before, from home.
    let home = browser_from("127.0.0.5");
    assert_eq!(
        app.login(&home, "erin", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    // An attacker at another address tries erin's password.
    let attacker = browser_from("127.0.0.2");
    for _ in 0..3 {
        let r = app.login(&attacker, "erin", "not the password").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    // From there, even the right password waits now, and says for how long.
    let r = app.login(&attacker, "erin", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Too many failed log-ins for this account from your address"),
        "{body}"
    );
    assert!(body.contains("seconds"), "a short wait at first: {body}");
    assert_eq!(app.audit_count("login_throttled", "erin"), 1);
    // The owner, from an address that did not fail, logs in at once...
    let owner = browser_from("127.0.0.3");
    let r = app.login(&owner, "erin", PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the owner is not locked out"
    );
    // ...and, as that address is new to the account after failed tries, is told by mail.
    // Mails of that kind, to any address (`%`) or about one.
    let told = |app: &TestApp, ip: &str| -> i64 {
        let ip = ip.to_string();
        app.ctx
            .db
            .read(move |c| {
                Ok::<_, slices::error::Error>(c.query_row(
                    "SELECT count(*) FROM outbox WHERE kind = 'login_after_failures'
                       AND json_extract(data, '$.ip') LIKE ?1",
                    [ip],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    assert_eq!(told(&app, "127.0.0.3"), 1);
    // From home (an address it used before) no mail.
    let r = app
        .login(&browser_from("127.0.0.5"), "erin", PASSWORD)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(told(&app, "%"), 1);

    // Each further failure from the attacker's address doubles its wait.
    let policy = app.ctx.policy;
    assert_eq!(policy.delay_after(2, 3), None);
    assert_eq!(policy.delay_after(3, 3), Some(5));
    assert_eq!(policy.delay_after(4, 3), Some(10));
    assert_eq!(policy.delay_after(9, 3), Some(320));
    assert_eq!(
        policy.delay_after(30, 3),
        Some(policy.window_secs),
        "at most the window"
    );

    // Staff see the account being slowed.
    let staff_name = "gina";
    app.add_user(staff_name, slices::domain::Role::Staff);
    let staff = app.logged_in_as(staff_name).await;
    let page = app.get(&staff, "/staff/users").await.text().await.unwrap();
    assert!(page.contains("Log-ins being slowed"), "{page}");
    assert!(page.contains("subject=erin"), "{page}");

    // An address that fails on many accounts is slowed for all of them.
    let sprayer = browser_from("127.0.0.4");
    for name in ["ghost1", "ghost2", "ghost3", "ghost4", "ghost5", "ghost6"] {
        app.login(&sprayer, name, "whatever password").await;
    }
    let r = app.login(&sprayer, "frank", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("from your network address"));
    let r = app
        .login(&browser_from("127.0.0.6"), "frank", PASSWORD)
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn changing_the_password_ends_other_sessions() {
    let app = spawn_app().await;
    app.add_user("gina", slices::domain::Role::Student);
    let laptop = app.logged_in_as("gina").await;
    let phone = app.logged_in_as("gina").await;
    let new = "a much better passphrase";
    // Wrong current password: refused, nothing changes.
    let r = app
        .post(
            &laptop,
            "/account",
            "/account/password",
            &[
                ("current_password", "nope nope nope"),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not your current password"));
    let r = app
        .post(
            &laptop,
            "/account",
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", new),
                ("new_password_confirm", new),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.whoami(&laptop).await.as_deref(), Some("gina"));
    assert_eq!(app.whoami(&phone).await, None, "the other session ended");
    assert_eq!(
        app.login(&browser(), "gina", PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.login(&browser(), "gina", new).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.audit_count("password_changed", "gina"), 1);
}

#[actix_web::test]
async fn logout_everywhere_ends_every_session() {
    let app = spawn_app().await;
    app.add_user("hank", slices::domain::Role::Student);
    let a = app.logged_in_as("hank").await;
    let b = app.logged_in_as("hank").await;
    let r = app
        .post(&a, "/account", "/account/logout-everywhere", &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.whoami(&a).await, None);
    assert_eq!(app.whoami(&b).await, None);
}

#[actix_web::test]
async fn sessions_expire_when_idle() {
    let app = spawn_app().await;
    app.add_user("ivy", slices::domain::Role::Student);
    let c = app.logged_in_as("ivy").await;
    assert_eq!(app.whoami(&c).await.as_deref(), Some("ivy"));
    // Make the session look idle for longer than allowed.
    app.ctx
        .db
        .write(|tx| {
            tx.execute(
                "UPDATE sessions SET last_seen_at = last_seen_at - 86400",
                [],
            )?;
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    assert_eq!(app.whoami(&c).await, None);
}

#[actix_web::test]
async fn the_first_admin_link_works_once() {
    let app = spawn_app().await;
    let token = slices::accounts::first_admin_invite(&app.ctx.db)
        .unwrap()
        .expect("no admin yet");
    let page = format!("/setup/{token}");
    let c = browser();
    let r = app.get(&c, &page).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Create the admin account"));
    let fields = [
        ("username", "root2"),
        ("email", "ops@example.edu"),
        ("display_name", "Lab Ops"),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
    ];
    let r = app.post(&c, &page, &page, &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.whoami(&c).await.as_deref(), Some("root2"));
    assert_eq!(app.get(&c, "/staff/users").await.status(), StatusCode::OK);
    // Used up.
    let r = app.get(&browser(), &page).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // And no new link is made while an admin exists.
    assert!(slices::accounts::first_admin_invite(&app.ctx.db)
        .unwrap()
        .is_none());
}

/// A password hashed with the older 19 MiB parameters still logs in, and is hashed again
/// with today's at that log-in (its owner notices nothing).
#[actix_web::test]
async fn an_older_hash_logs_in_and_is_made_again() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let app = spawn_app().await;
    app.add_user("olga", slices::domain::Role::Student);
    let old = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, None).unwrap(),
    )
    .hash_password(
        PASSWORD.as_bytes(),
        &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
    )
    .unwrap()
    .to_string();
    let stored = |app: &TestApp| -> String {
        app.ctx
            .db
            .read(|c| {
                Ok::<_, slices::error::Error>(c.query_row(
                    "SELECT password_hash FROM users WHERE username = 'olga'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    };
    let o = old.clone();
    app.ctx
        .db
        .write(|tx| {
            tx.execute(
                "UPDATE users SET password_hash = ?1 WHERE username = 'olga'",
                [&o],
            )?;
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    assert_eq!(stored(&app), old);
    let r = app.login(&browser(), "olga", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let now = stored(&app);
    assert!(now.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{now}");
    let r = app.login(&browser(), "olga", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the new hash logs in");
    assert_eq!(stored(&app), now, "made again once");
}

/// A session cookie planted beside the real one (a sibling host's page can set one for a
/// parent domain over plain HTTP) makes neither count: the request is logged out, never the
/// planter's session.
#[actix_web::test]
async fn a_planted_second_session_cookie_is_not_trusted() {
    let app = spawn_app().await;
    app.add_user("hana", slices::domain::Role::Student);
    app.add_user("mallory", slices::domain::Role::Student);
    let session_of = |r: &reqwest::Response| {
        r.cookies()
            .find(|c| c.name() == "slices_session")
            .map(|c| c.value().to_string())
            .expect("a session cookie at log-in")
    };
    let planted = session_of(&app.login(&browser(), "mallory", PASSWORD).await);
    let own = session_of(&app.login(&browser(), "hana", PASSWORD).await);
    // Each alone is its owner's.
    let page = |cookie: String| {
        let url = app.url("/account");
        async move {
            reqwest::Client::new()
                .get(url)
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert!(page(format!("slices_session={own}")).await.contains("hana"));
    // The browser sends both (the planted one first): neither counts.
    let body = page(format!("slices_session={planted}; slices_session={own}")).await;
    assert!(
        !body.contains("mallory"),
        "never the planter's session: {body}"
    );
    assert!(
        !body.contains("hana"),
        "logged out, to log in again: {body}"
    );
}

/// Behind a trusted proxy the client's address is the one the proxy wrote (the last
/// X-Forwarded-For entry): addresses a client writes before it change nothing, so it cannot
/// dodge the slowing of its failed log-ins.
#[actix_web::test]
async fn a_client_cannot_choose_its_address_behind_the_proxy() {
    let app = spawn_with(|c| {
        c.trust_forwarded_for = true;
        c.login_max_failures_per_account = 3;
    })
    .await;
    app.add_user("ines", slices::domain::Role::Student);
    let attempt = |spoofed: String, password: &'static str| {
        let url = app.url("/login");
        async move {
            let c = browser();
            let token = crate::http::csrf(&c, &url).await;
            c.post(&url)
                .header("Origin", url.trim_end_matches("/login"))
                .header("X-Forwarded-For", format!("{spoofed}, 192.0.2.7"))
                .form(&[("login", "ines"), ("password", password), ("csrf", &token)])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..3 {
        let r = attempt(format!("198.51.100.{i}"), "not the password").await;
        assert_eq!(r, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = attempt("203.0.113.99".into(), PASSWORD).await;
    assert_eq!(
        r,
        StatusCode::TOO_MANY_REQUESTS,
        "the proxy's address is what counts"
    );
    assert_eq!(app.audit_count("login_throttled", "ines"), 1);
}
