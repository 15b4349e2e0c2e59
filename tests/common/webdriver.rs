//! A small W3C WebDriver client over HTTP (enough to drive Debian's chromium through
//! chromedriver from `cargo test`), and the chromedriver process itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)");
        super::system::wait_for_port(&format!("127.0.0.1:{port}"), 20);
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn session(&self, width: u32, height: u32) -> Session {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display()),
                         format!("--window-size={width},{height}")]
            }
        }}});
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session {
            http,
            base: format!("{}/session/{id}", self.url),
            _profile: profile,
        }
    }
}

pub struct Session {
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .unwrap()
            .to_string()
    }

    pub async fn try_find(&self, css: &str) -> Option<String> {
        let r = self
            .http
            .post(format!("{}/element", self.base))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|e| e.as_str())
            .map(str::to_string)
    }

    /// Replaces the field's text (as a user selecting all and typing would).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Logs `who` in through the log-in form (the test password) and waits for the dashboard.
    #[allow(dead_code)]
    pub async fn log_in(&self, base: &str, who: &str) {
        self.go(&format!("{base}/login")).await;
        self.fill("#login", who).await;
        self.fill("#password", "correct horse battery").await;
        self.click("main form button[type=submit]").await;
        self.wait_url(&format!("{base}/"), 10).await;
    }

    /// Shows pages as a phone `width` CSS pixels wide would (Chrome's windows are never
    /// narrower than 500 px): through the DevTools protocol, as Chrome's device mode does.
    #[allow(dead_code)]
    pub async fn as_phone(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({
                "cmd": "Emulation.setDeviceMetricsOverride",
                "params": {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true}
            })),
        )
        .await;
    }

    /// Types into whatever has the focus, key by key (`\u{E007}` is Enter), as a person would.
    #[allow(dead_code)]
    pub async fn keys(&self, text: &str) {
        let mut keys = Vec::new();
        for c in text.chars() {
            keys.push(json!({"type": "keyDown", "value": c.to_string()}));
            keys.push(json!({"type": "keyUp", "value": c.to_string()}));
        }
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": keys}]})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn displayed(&self, css: &str) -> bool {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{e}/displayed"),
            None,
        )
        .await
        .as_bool()
        .unwrap_or(false)
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until the browser is at `url` (a click's navigation may still be under way).
    pub async fn wait_url(&self, url: &str, secs: u64) {
        let start = Instant::now();
        while self.url().await != url {
            assert!(
                start.elapsed().as_secs() < secs,
                "still at {} rather than {url}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// JavaScript in the page (for what WebDriver has no verb for).
    pub async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// What the page's console said at the level of an error since the last call (a script
    /// that threw, a resource that failed to load).
    #[allow(dead_code)]
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Runs axe-core (the fixture in tests/fixtures/axe-core) on the page: the serious and
    /// critical violations, each as "rule: help (where)".
    #[allow(dead_code)]
    pub async fn accessibility_violations(&self) -> Vec<String> {
        const AXE: &str = include_str!("../fixtures/axe-core/axe.min.js");
        let js = format!(
            "{AXE}\n;return axe.run(document, {{resultTypes: ['violations']}}).then(function (r) {{
               return r.violations.filter(function (v) {{ return v.impact === 'serious' || v.impact === 'critical'; }})
                 .map(function (v) {{ return v.id + ': ' + v.help + ' (' + v.nodes.slice(0, 3).map(function (n) {{ return n.target.join(' '); }}).join(', ') + ')'; }});
             }});"
        );
        let v = self.script(&js).await;
        v.as_array()
            .unwrap_or_else(|| panic!("axe did not run: {v}"))
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Saves a PNG of the page.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The text of `css`, or None while the page is changing under it.
    pub async fn try_text(&self, css: &str) -> Option<String> {
        let e = self.try_find(css).await?;
        let v: Value = self
            .http
            .get(format!("{}/element/{e}/text", self.base))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["value"].as_str().map(str::to_string)
    }

    /// Waits until `css`'s text satisfies `f`, without reloading the page.
    pub async fn wait_text(&self, css: &str, secs: u64, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let t = self.try_text(css).await.unwrap_or_default();
            if f(&t) {
                return t;
            }
            assert!(
                start.elapsed().as_secs() < secs,
                "{css} still says {t:?} after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
