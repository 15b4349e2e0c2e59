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

/// The page at `url`, as text.
#[allow(dead_code)]
pub async fn page(c: &Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// A newcomer's student: signs up through the form (the test password) and `admin` confirms
/// their address by hand (the mail is a file); their logged-in client.
#[allow(dead_code)]
pub async fn confirmed_student(admin: &Client, base: &str, username: &str) -> Client {
    let c = browser();
    let email = format!("{username}@example.edu");
    let r = form(
        &c,
        base,
        "/signup",
        "/signup",
        &[
            ("username", username),
            ("email", &email),
            ("display_name", "Stu"),
            ("password", "correct horse battery"),
            ("password_confirm", "correct horse battery"),
        ],
    )
    .await;
    assert_eq!(r, 303, "signed up");
    let page = format!("/staff/users/{username}");
    let r = form(admin, base, &page, &format!("{page}/verify"), &[]).await;
    assert_eq!(r, 303, "confirmed");
    c
}

/// Staff approve the first request in their queue; its slice id.
#[allow(dead_code)]
pub async fn approve_first_request(admin: &Client, base: &str) -> i64 {
    let queue = page(admin, &format!("{base}/staff/requests")).await;
    let id: i64 = queue
        .split("/staff/requests/")
        .skip(1)
        .find_map(|rest| rest.split('/').next()?.parse().ok())
        .expect("a request in the queue");
    let action = format!("/staff/requests/{id}/approve");
    let r = form(admin, base, "/staff/requests", &action, &[]).await;
    assert_eq!(r, 303, "approved");
    id
}

/// The slice's status, as its dashboard's script polls it.
#[allow(dead_code)]
pub async fn slice_status(c: &Client, base: &str, id: i64) -> serde_json::Value {
    c.get(format!("{base}/slices/{id}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the slice's status (as its dashboard polls it) says `state`; the status.
#[allow(dead_code)]
pub async fn wait_status(
    c: &Client,
    base: &str,
    id: i64,
    state: &str,
    secs: u64,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let s = slice_status(c, base, id).await;
        if s["state"] == state {
            return s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "not {state}: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
