//! Staff set-up pages and students' keys, over HTTP against the real server: what each form
//! accepts, the clear error for what it refuses (nothing saved), and what each action starts.

use reqwest::StatusCode;
use slices::domain::{Role, TemplateName};

use crate::app::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m stu@laptop";

#[actix_web::test]
async fn students_manage_their_ssh_keys() {
    let app = spawn_app().await;
    app.add_user("stu", Role::Student);
    let stu = app.logged_in_as("stu").await;
    let page = app.get(&stu, "/keys").await.text().await.unwrap();
    assert!(page.contains("You have no key yet"), "{page}");

    // Refused, with the reason, the text kept, nothing saved.
    for (typed, says) in [
        ("hello", "not an SSH public key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "That is a private key"),
        ("ssh-ed25519 notbase64!!", "not valid base64"),
        (&format!("{KEY}\nssh-rsa AAAA"), "one line"),
    ] {
        let r = app.post(&stu, "/keys", "/keys", &[("key", typed)]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{typed}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{typed}: {body}");
        assert!(body.contains(&escape_html(typed.lines().next().unwrap())), "{typed}: the text is kept");
    }
    assert_eq!(app.count("SELECT count(*) FROM ssh_keys"), 0);

    // Added: listed with its fingerprint, and the user's gateway run is queued.
    let r = app.post(&stu, "/keys", "/keys", &[("key", KEY)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app.get(&stu, "/keys").await.text().await.unwrap();
    let fp = slices::domain::SshPublicKey::parse(KEY)
        .unwrap()
        .fingerprint()
        .replace('/', "&#x2F;"); // as Tera escapes it
    assert!(page.contains(&fp) && page.contains("stu@laptop"), "{page}");
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'gateway' AND state = 'queued'"),
        1
    );
    // The same key twice is refused.
    let r = app.post(&stu, "/keys", "/keys", &[("key", KEY)]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("already added"));

    // Removing asks first, then removes.
    let id = app.count("SELECT id FROM ssh_keys");
    let confirm = app
        .get(&stu, &format!("/keys/{id}/remove"))
        .await
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("Remove this key?") && confirm.contains(&fp));
    let r = app
        .post(
            &stu,
            &format!("/keys/{id}/remove"),
            &format!("/keys/{id}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("SELECT count(*) FROM ssh_keys"), 0);
    let audit = app.count("SELECT count(*) FROM audit WHERE event IN ('key_added', 'key_removed')");
    assert_eq!(audit, 2);
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('/', "&#x2F;")
}

#[actix_web::test]
async fn staff_add_nodes_plans_and_templates_and_see_the_gateway() {
    let app = spawn_app().await;
    app.add_user("tess", Role::Staff);
    let tess = app.logged_in_as("tess").await;

    // A node: bad values are named; a good one shows the enrolment commands once.
    let r = app
        .post(
            &tess,
            "/staff/nodes/new",
            "/staff/nodes/new",
            &[("name", "Node 1"), ("address", "nohost")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("id=\"name-error\"") && body.contains("id=\"address-error\""),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM nodes"), 0);
    let r = app
        .post(
            &tess,
            "/staff/nodes/new",
            "/staff/nodes/new",
            &[("name", "node1"), ("address", "node1.example.edu:7070")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("BEGIN PRIVATE KEY")
            && body.contains("slices-agent run --config /etc/slices-agent/agent.toml"),
        "{body}"
    );
    assert!(
        body.contains("name = &quot;node1&quot;") || body.contains("name = \"node1\""),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM nodes WHERE name = 'node1' AND address = 'node1.example.edu:7070'"), 1);
    let r = app
        .post(
            &tess,
            "/staff/nodes/new",
            "/staff/nodes/new",
            &[("name", "node1"), ("address", "x.example.edu:7070")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("exists already"));

    // What the reconcile found differing is on the Nodes page, newest first.
    app.ctx
        .db
        .write(|tx| {
            slices::accounts::audit::record(
                tx,
                slices::accounts::Event::Drift,
                &slices::accounts::Actor::default(),
                slices::accounts::audit::Subject::Container {
                    node: "node1",
                    veid: 4999,
                },
                "a container no slice holds (an orphan)",
            )
        })
        .unwrap();
    let page = app.get(&tess, "/staff/nodes").await.text().await.unwrap();
    assert!(
        page.contains("container ve4999 on node1") && page.contains("(an orphan)"),
        "{page}"
    );

    // Plans: bad numbers are named, nothing saved; a good plan is offered; default moves.
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/plans",
            &[
                ("name", "large"),
                ("memory_mb", "lots"),
                ("memory_limit_mb", "100"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("A whole number."));
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/plans",
            &[
                ("name", "large"),
                ("memory_mb", "1024"),
                ("memory_limit_mb", "512"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("at least memory_mb"));
    assert_eq!(app.count("SELECT count(*) FROM plans"), 1);
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/plans",
            &[
                ("name", "large"),
                ("memory_mb", "1024"),
                ("memory_limit_mb", "2048"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let large = app.count("SELECT id FROM plans WHERE name = 'large'");
    assert_eq!(
        app.count(&format!("SELECT processes FROM plans WHERE id = {large}")),
        240
    );
    // Students are root in their slices unless the plan says not.
    assert_eq!(
        app.count(&format!(
            "SELECT student_root FROM plans WHERE id = {large}"
        )),
        1
    );
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/plans",
            &[
                ("name", "exam"),
                ("memory_mb", "256"),
                ("memory_limit_mb", "256"),
                ("no_root", "on"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count("SELECT student_root FROM plans WHERE name = 'exam'"),
        0
    );
    let page = app.get(&tess, "/staff/plans").await.text().await.unwrap();
    assert!(
        page.contains("yes (sudo)") && page.contains(">no<"),
        "{page}"
    );
    app.post(
        &tess,
        "/staff/plans",
        &format!("/staff/plans/{large}/default"),
        &[],
    )
    .await;
    assert_eq!(app.count("SELECT id FROM plans WHERE is_default"), large);
    assert_eq!(app.count("SELECT count(*) FROM plans WHERE is_default"), 1);

    // Templates: offered without its file (said so); a hash that cannot be checked is refused.
    let r = app
        .post(
            &tess,
            "/staff/templates",
            "/staff/templates",
            &[
                ("name", "debian-12"),
                ("description", "Debian"),
                ("sha256", &"ab".repeat(32)),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("no debian-12.tar.gz on the master"));
    let file = app.ctx.config.os_templates_dir().join("debian-12.tar.gz");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"not really a template").unwrap();
    let r = app
        .post(
            &tess,
            "/staff/templates",
            "/staff/templates",
            &[
                ("name", "debian-12"),
                ("description", "Debian"),
                ("sha256", &"ab".repeat(32)),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("another file or a damaged copy"));
    let r = app
        .post(
            &tess,
            "/staff/templates",
            "/staff/templates",
            &[("name", "debian-12"), ("description", "Debian 12")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&tess, "/staff/templates")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("debian-12") && page.contains("Debian 12") && page.contains("offered"));
    let choices = app.ctx.db.read(slices::slices::template_choices).unwrap();
    assert_eq!(
        choices[0].name,
        TemplateName::parse("debian-12").unwrap().to_string()
    );
    app.post(&tess, "/staff/templates", "/staff/templates/sync", &[])
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'template_sync'"),
        1
    );
    // Withdrawn: students can no longer choose it; the file stays.
    let r = app
        .post(
            &tess,
            "/staff/templates",
            "/staff/templates/debian-12/withdraw",
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app
        .get(&tess, "/staff/templates")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("is no longer offered"), "{page}");
    assert!(page.contains("not offered"), "{page}");
    assert!(app
        .ctx
        .db
        .read(slices::slices::template_choices)
        .unwrap()
        .iter()
        .all(|t| t.name != "debian-12"));
    let r = app
        .post(
            &tess,
            "/staff/templates",
            "/staff/templates/debian-12/withdraw",
            &[],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "not offered: nothing to withdraw"
    );

    // The gateway page: the local target, a check, and an apply queued.
    let page = app.get(&tess, "/staff/gateway").await.text().await.unwrap();
    assert!(page.contains("local files under"), "{page}");
    // node1 was given the first /24 of the pool, and the page says how the gateway reaches it.
    assert!(
        page.contains("ip route replace 10.77.0.0&#x2F;24 via node1.example.edu    # node node1"),
        "{page}"
    );
    let r = app
        .post(&tess, "/staff/gateway", "/staff/gateway/check", &[])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("What differs now") && body.contains("~ map:"),
        "{body}"
    );
    app.post(&tess, "/staff/gateway", "/staff/gateway/apply", &[])
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'gateway' AND user_id IS NULL"),
        1
    );

    // Settings: shown, never editable; secrets masked.
    let page = app
        .get(&tess, "/staff/settings")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("gateway_<wbr>target") && page.contains("never changes them"));
    assert!(!page.contains("<form method=\"post\" action=\"/staff/settings"));
    // Each value says where it came from, and one that differs shows the default beside it.
    let row = |key: &str| {
        let at = page
            .find(&format!("<code>{}</code>", key.replace('_', "_<wbr>")))
            .unwrap_or_else(|| panic!("{key}: {page}"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_string()
    };
    let workers = row("workers");
    assert!(workers.contains("flag --workers"), "{workers}");
    assert!(workers.contains("default <code>0</code>"), "{workers}");
    let hours = row("session_hours");
    assert!(
        hours.contains("built-in default") && !hours.contains("badge"),
        "{hours}"
    );
}

#[actix_web::test]
async fn quotas_limit_slices_and_plans_at_request_and_at_approval() {
    let app = spawn_app().await;
    app.ctx
        .db
        .write(|tx| slices::slices::add_template(tx, &TemplateName::parse("t1").unwrap(), ""))
        .unwrap();
    app.add_user("stu", Role::Student);
    app.add_user("tess", Role::Staff);
    let stu = app.logged_in_as("stu").await;
    let tess = app.logged_in_as("tess").await;
    let ask = |course: &'static str| {
        let (app, stu) = (&app, &stu);
        async move {
            app.post(
                stu,
                "/request",
                "/request",
                &[("template", "t1"), ("course", course)],
            )
            .await
        }
    };
    let page = app.get(&stu, "/request").await.text().await.unwrap();
    assert!(
        page.contains("up to 2 slices (the default quota); you have 0"),
        "{page}"
    );
    assert_eq!(ask("CS 1").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(ask("CS 1").await.status(), StatusCode::SEE_OTHER);
    let r = ask("CS 1").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("You already have 2 slices, the most the default quota allows (2)"),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM slices"), 2);

    // Staff give course CS 9 three slices, but only the plan "large".
    app.post(
        &tess,
        "/staff/plans",
        "/staff/plans",
        &[
            ("name", "large"),
            ("memory_mb", "1024"),
            ("memory_limit_mb", "2048"),
        ],
    )
    .await;
    let large = app.count("SELECT id FROM plans WHERE name = 'large'");
    let standard = app.count("SELECT id FROM plans WHERE name = 'standard'");
    let plan_field = format!("plan_{large}");
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/quotas",
            &[
                ("scope", "course"),
                ("course", "CS 9"),
                ("max_slices", "3"),
                (&plan_field, "on"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app.get(&tess, "/staff/plans").await.text().await.unwrap();
    assert!(page.contains("course <strong>CS 9</strong>"), "{page}");
    // A new rule's form starts from the default quota (2), not a figure of its own.
    assert!(
        page.contains("name=\"max_slices\" type=\"number\" min=\"0\" max=\"100\" value=\"2\""),
        "{page}"
    );
    let r = app
        .post(
            &stu,
            "/request",
            "/request",
            &[
                ("template", "t1"),
                ("course", "CS 9"),
                ("plan", &standard.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("That plan is not in the quota of course CS 9"));
    let r = app
        .post(
            &stu,
            "/request",
            "/request",
            &[
                ("template", "t1"),
                ("course", "cs 9"),
                ("plan", &large.to_string()),
            ],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "course names match whatever the case"
    );
    // A bad rule is refused and changes nothing.
    let r = app
        .post(
            &tess,
            "/staff/plans",
            "/staff/quotas",
            &[
                ("scope", "user"),
                ("username", "nobody"),
                ("max_slices", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("No user has that name."));
    assert_eq!(app.count("SELECT count(*) FROM quotas"), 2);

    // At approval the quota is checked again: with the default cut to 1, the second CS 1
    // request cannot be approved while the first is.
    app.post(
        &tess,
        "/staff/plans",
        "/staff/quotas",
        &[("scope", "default"), ("max_slices", "1")],
    )
    .await;
    let first = app.count("SELECT min(id) FROM slices");
    let second = app.count(&format!("SELECT min(id) FROM slices WHERE id > {first}"));
    app.post(
        &tess,
        "/staff/requests",
        &format!("/staff/requests/{first}/approve"),
        &[],
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM slices WHERE id = {first} AND state = 'approved'"
        )),
        1
    );
    let r = app
        .post(
            &tess,
            "/staff/requests",
            &format!("/staff/requests/{second}/approve"),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM slices WHERE id = {second} AND state = 'requested'"
        )),
        1,
        "not approved"
    );
    let queue = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        queue.contains("stu already has 1 slice, the most the default quota allows (1)"),
        "{queue}"
    );
}
