use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use slices::accounts::{self, Event, Grant, SignUpForm};
use slices::config::Config;
use slices::context::Context;
use slices::domain::Role;
use slices::web::Application;

pub struct TestApp {
    pub base: String,
    pub ctx: Arc<Context>,
    pub _dir: tempfile::TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let h = self.handle.clone();
        actix_web::rt::spawn(async move { h.stop(false).await });
    }
}

pub fn config_in(dir: &std::path::Path) -> Config {
    let flags = [
        ("data", dir.join("data").display().to_string()),
        ("listen", "127.0.0.1:0".to_string()),
        ("workers", "2".to_string()),
    ];
    Config::load(None, Vec::<(String, String)>::new(), &flags).expect("test config")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    adjust(&mut config);
    let ctx = Context::open(config).expect("open context");
    let app = Application::build(ctx.clone()).expect("build app");
    let base = app.base_url().to_string();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        ctx,
        _dir: dir,
        handle,
    }
}

#[allow(unused_imports)]
pub use super::http::{browser, browser_from};

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates an account directly through the library (as `slices user add` does).
    pub fn add_user(&self, username: &str, role: Role) {
        let form = SignUpForm {
            username: username.into(),
            email: format!("{username}@example.edu"),
            display_name: format!("{username} tester"),
            password: PASSWORD.into(),
            password_confirm: PASSWORD.into(),
        };
        accounts::create_account(
            &self.ctx.db,
            &self.ctx.policy,
            form.check().unwrap(),
            Grant {
                role,
                event: Event::AccountCreated,
                creator: None,
                origin: None,
                invite: None,
            },
        )
        .unwrap();
    }

    /// The number (or id) a query of the master's database gives.
    pub fn count(&self, sql: &str) -> i64 {
        self.ctx
            .db
            .read(|c| Ok::<i64, slices::error::Error>(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    }

    pub async fn get(&self, c: &Client, path: &str) -> Response {
        c.get(self.url(path)).send().await.unwrap()
    }

    /// The form token on a page.
    pub async fn csrf(&self, c: &Client, path: &str) -> String {
        let body = self.get(c, path).await.text().await.unwrap();
        extract_csrf(&body).unwrap_or_else(|| panic!("no form token on {path}: {body}"))
    }

    /// Posts a form the way a browser does: token from the page, Origin of the site.
    pub async fn post(
        &self,
        c: &Client,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let token = self.csrf(c, page).await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &token));
        c.post(self.url(action))
            .header("Origin", &self.base)
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, c: &Client, login: &str, password: &str) -> Response {
        self.post(
            c,
            "/login",
            "/login",
            &[("login", login), ("password", password)],
        )
        .await
    }

    pub async fn logged_in_as(&self, username: &str) -> Client {
        let c = browser();
        let r = self.login(&c, username, PASSWORD).await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "log-in of {username} failed"
        );
        c
    }

    pub async fn signup(&self, c: &Client, username: &str, email: &str, name: &str) -> Response {
        self.post(
            c,
            "/signup",
            "/signup",
            &[
                ("username", username),
                ("email", email),
                ("display_name", name),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await
    }

    /// Who the home page says is logged in.
    pub async fn whoami(&self, c: &Client) -> Option<String> {
        // The navigation names the logged-in user in its link to the account page.
        let body = self.get(c, "/").await.text().await.unwrap();
        let link = body.find("<a href=\"/account\"")?;
        let start = body[link..].find('>')? + link + 1;
        let end = body[start..].find("</a>")? + start;
        Some(body[start..end].to_string())
    }

    pub fn audit_count(&self, event: &str, subject: &str) -> i64 {
        self.ctx
            .db
            .read(|c| {
                Ok::<_, slices::error::Error>(c.query_row(
                    "SELECT count(*) FROM audit WHERE event = ?1 AND subject = ?2",
                    [event, subject],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }
}

pub fn extract_csrf(body: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

pub fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}
