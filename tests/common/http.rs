//! The web interface as a browser uses it, for tests: a client that keeps cookies and does
//! not follow redirects, and a form submitted with the page's token and origin.

use reqwest::{Client, StatusCode};

pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser on another machine: its connections come from `ip` (an address of the
/// loopback network, 127.0.0.2 and so on), which the master sees as the client's address.
pub fn browser_from(ip: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The form token on the page at `url`.
pub async fn csrf(c: &Client, url: &str) -> String {
    let body = c.get(url).send().await.unwrap().text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a form") + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_string()
}

/// Logs `login` in through the log-in form (the test password); the answer's status.
pub async fn log_in(c: &Client, base: &str, login: &str) -> StatusCode {
    form(
        c,
        base,
        "/login",
        "/login",
        &[("login", login), ("password", "correct horse battery")],
    )
    .await
}

/// Opens `page`, then posts `fields` to `action` as its form would; the answer's status.
pub async fn form(
    c: &Client,
    base: &str,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> StatusCode {
    let token = csrf(c, &format!("{base}{page}")).await;
    let mut all = fields.to_vec();
    all.push(("csrf", &token));
    c.post(format!("{base}{action}"))
        .header("Origin", base)
        .form(&all)
        .send()
        .await
        .unwrap()
        .status()
}
