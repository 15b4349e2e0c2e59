//! Log-in through the institution's single sign-on: a real OpenID provider (the npm package
//! `oidc-provider`, run by Node on loopback with the pinned versions of
//! tests/fixtures/oidc/package-lock.json) and the master's web interface. The whole browser
//! flow in Chromium; then, as an outsider would try them, a forged state, an answer taken to
//! another browser, a replayed answer and a replayed code, and ID tokens tampered with by the
//! provider's own token endpoint (another key, no signature, another audience, another nonce,
//! expired, another issuer): all refused, audited, and no session made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use reqwest::cookie::CookieStore;
use reqwest::{Client, StatusCode};
use serde_json::json;
use slices::config::Config;
use slices::context::Context;
use slices::ops::accounts::{self, AuthSource};

use crate::{system, webdriver};

const CLIENT_ID: &str = "slices-test";
const CLIENT_SECRET: &str = "a client secret for the loopback provider only";

/// Where the provider's npm packages are kept between runs (installed from the lock file).
fn node_dir() -> PathBuf {
    std::env::var_os("TEST_SLICES_NODE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/slices-test/oidc-provider"))
}

/// The provider's packages, installed with `npm ci` from the lock file when missing or when
/// the lock file changed; and the provider's script beside them (Node finds packages from the
/// script's folder).
fn provider_script() -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc");
    let dir = node_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(fixtures.join("package-lock.json")).unwrap();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if installed.as_deref() != Some(&lock[..]) || !dir.join("node_modules/oidc-provider").is_dir() {
        std::fs::copy(fixtures.join("package.json"), dir.join("package.json")).unwrap();
        std::fs::write(dir.join("package-lock.json"), &lock).unwrap();
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .expect("npm (Node.js 20 and npm are on this kind of machine)");
        assert!(
            out.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let script = dir.join("provider.mjs");
    std::fs::copy(fixtures.join("provider.mjs"), &script).unwrap();
    script
}

/// The provider this test started; stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
    people: PathBuf,
    mode: PathBuf,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    fn start(dir: &Path, port: u16, redirect_uri: &str) -> Provider {
        let script = provider_script();
        let issuer = format!("http://127.0.0.1:{port}");
        let people = dir.join("people.json");
        let mode = dir.join("mode");
        let cfg = dir.join("provider.json");
        std::fs::write(
            &cfg,
            json!({
                "port": port, "issuer": issuer, "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET, "redirect_uri": redirect_uri,
                "people_file": people, "mode_file": mode,
            })
            .to_string(),
        )
        .unwrap();
        let p = Provider {
            child: Command::new("node")
                .arg(&script)
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("node"),
            issuer,
            people,
            mode,
        };
        p.set_people(json!({
            "1001": {"preferred_username": "ada", "name": "Ada Lovelace",
                     "email": "ada@example.edu", "email_verified": true,
                     "groups": ["students", "course:CS3650", "course:NOPE1"]},
            "1002": {"preferred_username": "grace", "name": "Grace Hopper",
                     "email": "grace@example.edu", "email_verified": true,
                     "groups": ["lab-admins"]},
            "1003": {"preferred_username": "root", "name": "Not A Person",
                     "email": "root@example.edu", "email_verified": true, "groups": []},
            "1004": {"preferred_username": "edsger", "name": "Edsger Dijkstra",
                     "email": "edsger@example.edu", "email_verified": true, "groups": []},
            "1005": {"preferred_username": "mallory", "name": "Mallory",
                     "email": "mallory@example.edu", "email_verified": false, "groups": []},
        }));
        system::wait_for_port(&format!("127.0.0.1:{port}"), 30);
        p
    }

    fn set_people(&self, people: serde_json::Value) {
        std::fs::write(&self.people, people.to_string()).unwrap();
    }

    /// Makes the token endpoint hand out tampered ID tokens (`""`: the real ones).
    fn tamper(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }
}

struct Lab {
    _dir: tempfile::TempDir,
    provider: Provider,
    ctx: Arc<Context>,
    base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

fn master_config(dir: &Path, listen: &str, issuer: &str, extra: &[(&str, &str)]) -> Config {
    let mut flags = vec![
        ("data", dir.join("data").display().to_string()),
        ("listen", listen.to_string()),
        ("workers", "2".to_string()),
        ("oidc_issuer", issuer.to_string()),
        ("oidc_client_id", CLIENT_ID.to_string()),
        ("oidc_client_secret", CLIENT_SECRET.to_string()),
        ("oidc_label", "Example College".to_string()),
        ("oidc_scopes", "email profile groups".to_string()),
        ("oidc_admin_groups", "lab-admins".to_string()),
        ("oidc_staff_groups", "lab-staff".to_string()),
        ("oidc_course_prefix", "course:".to_string()),
    ];
    flags.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()
}

async fn start_lab(extra: &[(&str, &str)]) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let (master_port, provider_port) = (
        crate::gateway_lab::free_port(),
        crate::gateway_lab::free_port(),
    );
    let listen = format!("127.0.0.1:{master_port}");
    let base = format!("http://{listen}");
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let ctx = Context::open(master_config(dir.path(), &listen, &issuer, extra)).unwrap();
    ctx.db
        .write(|tx| -> slices::error::Result<usize> {
            Ok(tx.execute(
                "INSERT INTO courses (code, title, ends_at, created_at, updated_at)
                 VALUES ('CS3650', 'Systems', 4102444800, 0, 0)",
                [],
            )?)
        })
        .unwrap();
    let provider = Provider::start(
        dir.path(),
        provider_port,
        &format!("{base}/login/sso/callback"),
    );
    let app = slices::web::Application::build(ctx.clone()).unwrap();
    assert_eq!(app.base_url(), base);
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    Lab {
        _dir: dir,
        provider,
        ctx,
        base,
        handle,
    }
}

fn jar_browser(jar: Arc<reqwest::cookie::Jar>) -> Client {
    Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The value of `name="NAME" value="..."` pairs of a form's hidden inputs, and its action.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        Some(tag[start..start + tag[start..].find('"')?].to_string())
    };
    let form_at = html.find("<form").expect("a form on the provider's page");
    let form_tag = &html[form_at..form_at + html[form_at..].find('>').unwrap()];
    let action = attr(form_tag, "action").unwrap();
    let mut fields = Vec::new();
    for piece in html[form_at..].split("<input").skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if attr(tag, "type").as_deref() == Some("hidden") {
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                fields.push((n, v));
            }
        }
    }
    (action, fields)
}

/// Starts a single sign-on log-in at the master and goes through the provider's own pages as
/// person `login` (any password), up to the answer the provider sends the browser back with:
/// that callback URL, not yet visited.
async fn answer_for(lab: &Lab, c: &Client, login: &str) -> String {
    let r = c
        .get(format!("{}/login/sso", lab.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let mut url = location(&r);
    assert!(url.starts_with(&lab.provider.issuer), "{url}");
    for _ in 0..20 {
        if url.starts_with(&lab.base) {
            return url;
        }
        let r = c
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        if r.status().is_redirection() {
            let to = location(&r);
            url = if to.starts_with('/') {
                format!("{}{to}", lab.provider.issuer)
            } else {
                to
            };
            continue;
        }
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let html = r.text().await.unwrap();
        let (action, mut fields) = form_of(&html);
        if html.contains("name=\"login\"") {
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "any password".into()));
        }
        let action = if action.starts_with('/') {
            format!("{}{action}", lab.provider.issuer)
        } else {
            action
        };
        let r = c.post(&action).form(&fields).send().await.unwrap();
        assert!(r.status().is_redirection(), "{action}: {}", r.status());
        let to = location(&r);
        url = if to.starts_with('/') {
            format!("{}{to}", lab.provider.issuer)
        } else {
            to
        };
    }
    panic!("the provider never sent the browser back");
}

fn sessions_of(lab: &Lab, username: &str) -> i64 {
    lab.ctx
        .db
        .read(|c| -> slices::error::Result<i64> {
            Ok(c.query_row(
                "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
                  WHERE u.username = ?1",
                [username],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

fn refusals(lab: &Lab, detail: &str) -> i64 {
    lab.ctx
        .db
        .read(|c| -> slices::error::Result<i64> {
            Ok(c.query_row(
                "SELECT count(*) FROM audit WHERE event = 'login_failed' AND detail LIKE ?1",
                [format!("%{detail}%")],
                |r| r.get(0),
            )?)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_with_the_institution_in_a_browser_and_log_out() {
    let Some(_alone) = system::alone("single sign-on in Chromium").await else {
        return;
    };
    let lab = start_lab(&[]).await;
    let driver = webdriver::Driver::start();
    let ada = driver.session(1200, 900).await;
    ada.go(&format!("{}/login", lab.base)).await;
    let button = ada.text("main a.button").await;
    assert_eq!(button, "Log in with Example College");
    ada.click("main a.button").await;
    // The provider's own log-in page, then its consent page.
    ada.wait_text("body", 10, |t| t.contains("Sign-in")).await;
    assert!(ada.url().await.starts_with(&lab.provider.issuer));
    ada.fill("input[name=login]", "1001").await;
    ada.fill("input[name=password]", "whatever the provider wants")
        .await;
    ada.click("button[type=submit]").await;
    ada.wait_text("body", 10, |t| t.contains("Continue")).await;
    ada.click("button[type=submit]").await;
    ada.wait_url(&format!("{}/", lab.base), 10).await;
    let main = ada.text("body").await;
    assert!(main.contains("Welcome, Ada Lovelace."), "{main}");

    // The account was made from the ID token: the provider's subject, its address taken as
    // confirmed, no password here, a student, the course that exists here.
    let user = lab
        .ctx
        .db
        .read(|c| accounts::users::by_external(c, AuthSource::Oidc, "1001"))
        .unwrap()
        .expect("an account for subject 1001");
    assert_eq!(user.username, "ada");
    assert_eq!(user.email, "ada@example.edu");
    assert!(user.email_verified_at.is_some());
    assert_eq!(user.role, slices::domain::Role::Student);
    let hash = lab
        .ctx
        .db
        .read(|c| accounts::users::password_hash(c, user.id))
        .unwrap();
    assert!(hash.is_empty());
    let courses = lab
        .ctx
        .db
        .read(|c| slices::records::courses::member_of(c, user.id))
        .unwrap();
    assert_eq!(courses, vec!["CS3650".to_string()]);
    assert_eq!(sessions_of(&lab, "ada"), 1);
    ada.go(&format!("{}/account", lab.base)).await;
    let account = ada.text("main").await;
    assert!(account.contains("single sign-on"), "{account}");

    // Log-out ends the session here.
    ada.click("form[action='/logout'] button").await;
    ada.wait_text("body", 10, |t| t.contains("You are logged out."))
        .await;
    assert_eq!(sessions_of(&lab, "ada"), 0);
    ada.go(&format!("{}/account", lab.base)).await;
    assert!(ada.url().await.contains("/login"), "{}", ada.url().await);
    // The master's pages (the provider's development pages ask for web fonts it cannot have).
    let errors: Vec<String> = ada
        .console_errors()
        .await
        .into_iter()
        .filter(|e| e.starts_with(&lab.base))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    ada.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_tampered_answers_are_refused() {
    let Some(_alone) = system::alone("single sign-on attacks").await else {
        return;
    };
    let lab = start_lab(&[]).await;

    // The honest way, without a browser: the answer logs Ada in.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let c = jar_browser(jar.clone());
    let answer = answer_for(&lab, &c, "1001").await;
    let base_url: reqwest::Url = lab.base.parse().unwrap();
    let trip_cookie = jar
        .cookies(&base_url)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap();
    assert!(trip_cookie.contains("slices_sso="));
    let r = c.get(&answer).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/");
    assert_eq!(sessions_of(&lab, "ada"), 1);

    // The same answer again, with the same cookies (from a proxy's log, the history): refused
    // here before the provider is asked.
    let replay = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = replay
        .get(&answer)
        .header("cookie", &trip_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("has been used already"));
    assert_eq!(refusals(&lab, "replayed"), 1);

    // The code again, in a log-in of its own (a fresh state and cookie): the provider will not
    // exchange a code twice, nor with another PKCE verifier.
    let old_code = reqwest::Url::parse(&answer)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let c2 = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
    let fresh = answer_for(&lab, &c2, "1001").await;
    let mut swapped = reqwest::Url::parse(&fresh).unwrap();
    let pairs: Vec<(String, String)> = swapped
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                old_code.clone()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    swapped.query_pairs_mut().clear().extend_pairs(pairs);
    let r = c2.get(swapped.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("did not vouch"));
    assert_eq!(refusals(&lab, "refused the log-in"), 1);
    assert_eq!(sessions_of(&lab, "ada"), 1);

    // A forged state: an answer whose state is not the one this browser's log-in sent.
    let c3 = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
    let answer = answer_for(&lab, &c3, "1001").await;
    let mut forged = reqwest::Url::parse(&answer).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged-state".to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let r = c3.get(forged.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not for the log-in this browser started"));
    assert_eq!(refusals(&lab, "state does not match"), 1);

    // An answer taken to another browser (log-in CSRF: an attacker's own answer, sent to a
    // victim to log them in as the attacker): no log-in was started there.
    let answer = answer_for(&lab, &c3, "1001").await;
    let victim = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
    let r = victim.get(&answer).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("not started in this browser"));
    // The provider's answer naming another issuer (a mix-up).
    let answer = answer_for(&lab, &c3, "1001").await;
    let mut mixed = reqwest::Url::parse(&answer).unwrap();
    let pairs: Vec<(String, String)> = mixed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    mixed.query_pairs_mut().clear().extend_pairs(pairs);
    let r = c3.get(mixed.as_str()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(sessions_of(&lab, "ada"), 1);

    // ID tokens tampered with at the token endpoint: each refused, no session.
    for (mode, why) in [
        ("foreign-key", "signature does not check"),
        ("alg-none", "signature does not check"),
        ("wrong-audience", "audience"),
        ("wrong-nonce", "nonce"),
        ("expired", "Expired"),
        ("wrong-issuer", "issuer"),
    ] {
        lab.provider.tamper(mode);
        let c = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
        let answer = answer_for(&lab, &c, "1001").await;
        let r = c.get(&answer).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{mode}");
        assert!(
            body.contains("did not vouch for this log-in"),
            "{mode}: {body}"
        );
        assert_eq!(sessions_of(&lab, "ada"), 1, "{mode}");
        // Refused for the reason the tampering gives, not another.
        let audited: String = lab
            .ctx
            .db
            .read(|c| -> slices::error::Result<String> {
                Ok(c.query_row(
                    "SELECT detail FROM audit WHERE event = 'login_failed' ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert!(audited.contains(why), "{mode}: {audited}");
    }
    assert!(refusals(&lab, "does not check") >= 6);
    lab.provider.tamper("");

    // Someone the provider calls by a name reserved here, or whose address it says is not
    // confirmed: told why, no account made.
    for (login, words) in [("1003", "username"), ("1005", "not confirmed")] {
        let c = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
        let answer = answer_for(&lab, &c, login).await;
        let r = c.get(&answer).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{login}");
        let body = r.text().await.unwrap();
        assert!(body.contains(words), "{login}: {body}");
    }
    for name in ["root", "mallory"] {
        let none = lab
            .ctx
            .db
            .read(|c| accounts::users::by_username(c, name))
            .unwrap();
        assert!(none.is_none(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_decide_roles_and_a_local_account_is_linked_only_by_staff() {
    let Some(_alone) = system::alone("single sign-on accounts").await else {
        return;
    };
    let lab = start_lab(&[]).await;
    let log_in = |login: &'static str| {
        let lab = &lab;
        async move {
            let c = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
            let answer = answer_for(lab, &c, login).await;
            let r = c.get(&answer).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };

    // Grace is in the admins' group: an admin here. Out of it, a student at her next log-in.
    let (status, _) = log_in("1002").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let role = |name: &str| {
        lab.ctx
            .db
            .read(|c| accounts::users::by_username(c, name))
            .unwrap()
            .unwrap()
            .role
    };
    assert_eq!(role("grace"), slices::domain::Role::Admin);
    let mut people: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lab.provider.people).unwrap()).unwrap();
    people["1002"]["groups"] = json!(["lab-staff"]);
    lab.provider.set_people(people.clone());
    let (status, _) = log_in("1002").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(role("grace"), slices::domain::Role::Staff);

    // A local account with Edsger's name: his single sign-on is refused and staff are told.
    let edsger = accounts::create_account(
        &lab.ctx.db,
        &lab.ctx.policy,
        accounts::NewAccount {
            username: slices::domain::Username::parse_new("edsger").unwrap(),
            email: slices::domain::Email::parse("edsger@home.example").unwrap(),
            display_name: slices::domain::DisplayName::parse("Edsger").unwrap(),
            password: slices::domain::NewPassword::parse(
                "password",
                "a local password of his",
                "edsger",
                Some("edsger@home.example"),
            )
            .unwrap(),
        },
        accounts::Grant {
            role: slices::domain::Role::Student,
            event: accounts::Event::SignUp,
            creator: None,
            origin: None,
            invite: None,
        },
    )
    .unwrap()
    .0;
    let (status, body) = log_in("1004").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("already has the name edsger"), "{body}");
    let clashes: i64 = lab
        .ctx
        .db
        .read(|c| -> slices::error::Result<i64> {
            Ok(c.query_row(
                "SELECT count(*) FROM audit WHERE event = 'directory_clash'
                  AND detail = 'single sign-on subject 1004'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(clashes, 1);
    // Staff link it; his next single sign-on takes the account (same id, his slices stay).
    let grace = lab
        .ctx
        .db
        .read(|c| accounts::users::by_username(c, "grace"))
        .unwrap()
        .unwrap();
    assert_eq!(lab.ctx.link_source(), Some(AuthSource::Oidc));
    accounts::link_to_directory(&lab.ctx.db, "edsger", AuthSource::Oidc, Some(&grace), "").unwrap();
    let (status, _) = log_in("1004").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let linked = lab
        .ctx
        .db
        .read(|c| accounts::users::by_external(c, AuthSource::Oidc, "1004"))
        .unwrap()
        .unwrap();
    assert_eq!(linked.id, edsger.id);
    assert_eq!(linked.email, "edsger@example.edu");

    // A username-only line of a course roster stands for the account single sign-on vouches
    // for under that name: Ada's request for the course is approved in advance by Grace.
    let (status, _) = log_in("1001").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let ada = lab
        .ctx
        .db
        .read(|c| accounts::users::by_username(c, "ada"))
        .unwrap()
        .unwrap();
    let entry = slices::records::rosters::NewEntry {
        email: None,
        username: Some("ada".into()),
        name: "Ada Lovelace".into(),
    };
    lab.ctx
        .db
        .write(|tx| slices::records::rosters::put(tx, "CS3650", &entry, grace.id))
        .unwrap();
    let approver = lab
        .ctx
        .db
        .read(|c| slices::ops::rosters::approver(c, "CS3650", &ada))
        .unwrap();
    assert_eq!(approver.map(|u| u.username), Some("grace".to_string()));

    // A disabled account stays out, whatever the provider says.
    assert_eq!(sessions_of(&lab, "edsger"), 1);
    accounts::disable(&lab.ctx.db, &grace, "edsger", "left the lab", "").unwrap();
    let (status, body) = log_in("1004").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("This account is disabled"), "{body}");
    assert_eq!(sessions_of(&lab, "edsger"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_is_said_so() {
    let Some(_alone) = system::alone("single sign-on, provider down").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", crate::gateway_lab::free_port());
    let nobody = format!("http://127.0.0.1:{}", crate::gateway_lab::free_port());
    let ctx = Context::open(master_config(dir.path(), &listen, &nobody, &[])).unwrap();
    let app = slices::web::Application::build(ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let c = jar_browser(Arc::new(reqwest::cookie::Jar::default()));
    let r = c.get(format!("{base}/login/sso")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Example College does not answer right now"),
        "{body}"
    );
    // The password form is still there for everyone (local_logins = all).
    assert!(body.contains("name=\"password\""));
    handle.stop(false).await;
}
