use reqwest::StatusCode;

use crate::app::*;

fn user_count(app: &TestApp) -> i64 {
    app.ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(
                c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?,
            )
        })
        .unwrap()
}

#[actix_web::test]
async fn signup_explains_every_problem_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let c = browser();
    let r = app
        .post(
            &c,
            "/signup",
            "/signup",
            &[
                ("username", "9lives"),
                ("email", "not-an-email"),
                ("display_name", "Nine <b>Lives</b>"),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("starts with a lowercase letter"), "{body}");
    assert!(body.contains("does not look like an email address"));
    assert!(
        body.contains("at least 10 characters"),
        "the password's problem is said beside the username's: {body}"
    );
    assert!(
        !body.contains("value=\"short\""),
        "a refused password is not written back"
    );
    assert!(body.contains("value=\"9lives\""));
    assert!(body.contains("value=\"not-an-email\""));
    assert!(
        body.contains("Nine &lt;b&gt;Lives&lt;&#x2F;b&gt;"),
        "HTML typed is escaped"
    );
    assert!(!body.contains("<b>Lives</b>"));
    assert_eq!(user_count(&app), 0);

    let r = app
        .post(
            &c,
            "/signup",
            "/signup",
            &[
                ("username", "kim"),
                ("email", "kim@example.edu"),
                ("display_name", "Kim"),
                ("password", "a quiet lantern night"),
                ("password_confirm", "other other other"),
            ],
        )
        .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("The two passwords differ"), "{body}");
    assert!(!body.contains("a quiet lantern night"));
    // A good password is kept when only another field was wrong: it need not be typed again.
    let r = app
        .post(
            &c,
            "/signup",
            "/signup",
            &[
                ("username", "root"),
                ("email", "kim@example.edu"),
                ("display_name", "Kim"),
                ("password", "a quiet lantern night"),
                ("password_confirm", "a quiet lantern night"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert_eq!(
        body.matches("value=\"a quiet lantern night\"").count(),
        2,
        "{body}"
    );
    let r = app
        .post(
            &c,
            "/signup",
            "/signup",
            &[
                ("username", "kim"),
                ("email", "kim@example.edu"),
                ("display_name", "Kim"),
                ("password", "kim"),
                ("password_confirm", "kim"),
            ],
        )
        .await;
    assert!(r.text().await.unwrap().contains("at least 10 characters"));
    assert_eq!(user_count(&app), 0);
}

#[actix_web::test]
async fn usernames_and_emails_are_unique_whatever_the_case() {
    let app = spawn_app().await;
    let r = app
        .signup(&browser(), "lee", "Lee@Example.edu", "Lee")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = app
        .signup(&browser(), "Lee", "other@example.edu", "Lee Two")
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Usernames are lowercase: try `lee`"));
    let r = app
        .signup(&browser(), "lee", "other@example.edu", "Lee Two")
        .await;
    assert!(r.text().await.unwrap().contains("That username is taken"));
    let r = app
        .signup(&browser(), "lee2", "lee@EXAMPLE.EDU", "Lee Two")
        .await;
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("An account with that email address exists"));
    assert_eq!(user_count(&app), 1);
}

#[actix_web::test]
async fn sql_and_shell_metacharacters_are_just_text() {
    let app = spawn_app().await;
    for evil in [
        "x'; DROP TABLE users; --",
        "$(id)",
        "a; rm -rf /",
        "../../etc",
        "a\nb",
        "nul\0l",
    ] {
        let r = app.signup(&browser(), evil, "e@example.edu", "E").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{evil:?}");
        let r = app.login(&browser(), evil, "whatever password").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{evil:?}");
    }
    // A name with SQL in it is stored and shown as typed.
    let c = browser();
    let r = app
        .signup(
            &c,
            "robert",
            "bobby@example.edu",
            "Robert'); DROP TABLE users;--",
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app.get(&c, "/account").await.text().await.unwrap();
    assert!(
        page.contains("Robert&#x27;); DROP TABLE users;--"),
        "{page}"
    );
    assert_eq!(user_count(&app), 1);
}

#[actix_web::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let c = browser();
    let token = app.csrf(&c, "/signup").await;
    let huge = "a".repeat(200 * 1024);
    let r = c
        .post(app.url("/signup"))
        .header("Origin", &app.base)
        .form(&[("username", huge.as_str()), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("larger than this site accepts"));

    // Bytes that are not UTF-8 once decoded.
    let body = format!("csrf={token}&username=al%FFice&email=a%40b.edu&display_name=A&password=x&password_confirm=x");
    let r = c
        .post(app.url("/signup"))
        .header("Origin", &app.base)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not valid UTF-8"));
    assert_eq!(user_count(&app), 0);
}

#[actix_web::test]
async fn forged_or_junk_cookies_are_nobody() {
    let app = spawn_app().await;
    app.add_user("mia", slices::domain::Role::Staff);
    let real = app.logged_in_as("mia").await;
    assert_eq!(app.whoami(&real).await.as_deref(), Some("mia"));
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for cookie in [
        "slices_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "slices_session=' OR 1=1 --",
        "slices_session=",
        "slices_session=%00%FF",
    ] {
        let r = c
            .get(app.url("/staff/users"))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{cookie}");
    }
}

#[actix_web::test]
async fn unknown_pages_get_a_page_not_a_crash() {
    let app = spawn_app().await;
    let r = app.get(&browser(), "/no/such/page").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("Not found"));
    let r = app.get(&browser(), "/setup/not-a-token").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.get(&browser(), "/static/style.css").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
}

/// The gateway makes a Unix account of every username: root, Debian's system accounts and
/// the services' own names are refused at sign-up with a clear message, and nothing is made.
#[actix_web::test]
async fn reserved_usernames_are_refused_at_sign_up() {
    let app = spawn_app().await;
    for name in [
        "root",
        "www-data",
        "nobody",
        "sshd",
        "slices",
        "systemd-journal",
    ] {
        let r = app
            .signup(&browser(), name, &format!("{name}@example.edu"), "Someone")
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains(&format!("`{name}` is reserved for the system")),
            "{name}: {page}"
        );
    }
    assert_eq!(user_count(&app), 0);
    // A name that only begins like one is fine.
    let r = app
        .signup(&browser(), "rooty", "rooty@example.edu", "Rooty")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// The passwords outside testers got through are refused at sign-up, each with the rule it
/// broke; a good one is taken.
#[actix_web::test]
async fn weak_passwords_are_refused_with_the_rule_they_break() {
    let app = spawn_app().await;
    let c = browser();
    for (password, rule) in [
        ("password123", "most common"),
        ("1234567890", "most common"),
        ("Sunshine2024!", "most common"),
        ("            ", "different characters"),
        ("kimberly.k is me", "username"),
        ("kim.jones@example.edu", "email address"),
    ] {
        let r = app
            .post(
                &c,
                "/signup",
                "/signup",
                &[
                    ("username", "kimberly"),
                    ("email", "kim.jones@example.edu"),
                    ("display_name", "Kim"),
                    ("password", password),
                    ("password_confirm", password),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{password:?}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(rule),
            "{password:?} refused for {rule}: {body}"
        );
    }
    assert_eq!(user_count(&app), 0);
    let r = app
        .post(
            &c,
            "/signup",
            "/signup",
            &[
                ("username", "kimberly"),
                ("email", "kim.jones@example.edu"),
                ("display_name", "Kim"),
                ("password", "orbit walnut tidal"),
                ("password_confirm", "orbit walnut tidal"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(user_count(&app), 1);
}
