//! The terminal in the browser: xterm.js (vendored in `static/vendor/xterm`) over a websocket
//! on the master's own origin, to a shell in the slice opened the way the SSH gateway opens one
//! (`ssh_gateway::open_shell`). The owner or staff may open one; staff's opening is audited
//! and written in the slice's events, which its owner reads on their dashboard.
//!
//! The websocket carries the terminal's bytes both ways as binary frames; a text frame from the
//! browser is a control message, `{"cols": C, "rows": R}` when the window changes size. It is
//! opened only with the page's form token and from the master's own origin (a page on a slice's
//! web name, a sibling host that the session cookie reaches, cannot open one).

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::error::Error;
use crate::ops::slices;
use crate::records::audit;
use crate::web::error::WebError;
use crate::web::extract::session::{LoggedIn, Viewer};
use crate::web::page::Page;
use crate::web::State;

/// xterm.js writes style elements: this page alone allows inline styles.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The slice, when the viewer may open a terminal in it (its owner, or staff).
async fn terminal_slice(
    state: &State,
    viewer: &Viewer,
    id: i64,
) -> Result<(slices::Slice, String), WebError> {
    let user = viewer
        .user()
        .cloned()
        .ok_or(WebError::from(Error::NotFound("slice")))?;
    Ok(state
        .run(move |db| {
            db.read(|c| {
                let s = slices::get(c, id)?
                    .filter(|s| s.user_id == user.id || user.role.is_staff())
                    .ok_or(Error::NotFound("slice"))?;
                let owner = crate::ops::accounts::users::by_id(c, s.user_id)?
                    .map(|u| u.username.to_string())
                    .unwrap_or_default();
                Ok::<_, Error>((s, owner))
            })
        })
        .await?)
}

#[get("/slices/{id}/terminal")]
async fn page(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, _): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (slice, owner) = terminal_slice(&state, &viewer, id.into_inner()).await?;
    let me = viewer.user().map(|u| u.id) == Some(slice.user_id);
    let mut res = Page::new("terminal.html")
        .with("slice", &slice)
        .with("owner", &owner)
        .with("mine", &me)
        .with(
            "socket",
            &format!(
                "/slices/{}/terminal/ws?{}",
                slice.id,
                serde_urlencoded::to_string([("t", viewer.csrf_token(&state))]).unwrap_or_default()
            ),
        )
        .render(&state, &req, &viewer)?;
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    Ok(res)
}

#[derive(Deserialize)]
struct Open {
    #[serde(default)]
    t: String,
    #[serde(default = "cols")]
    cols: u32,
    #[serde(default = "rows")]
    rows: u32,
}
fn cols() -> u32 {
    80
}
fn rows() -> u32 {
    24
}

#[derive(Deserialize)]
struct Resize {
    cols: u32,
    rows: u32,
}

#[get("/slices/{id}/terminal/ws")]
async fn socket(
    state: State,
    req: HttpRequest,
    body: web::Payload,
    LoggedIn(viewer, session): LoggedIn,
    id: web::Path<i64>,
    open: web::Query<Open>,
) -> Result<HttpResponse, WebError> {
    // A browser always names the page that opens a websocket: it must be ours.
    if !crate::web::extract::form::origin_is_ours(&state, &req, true)
        || !viewer.csrf_ok(&state, &open.t)
    {
        tracing::warn!(ip = %viewer.ip, "terminal from another origin or without its token refused");
        return Err(WebError::Csrf);
    }
    let (slice, owner) = terminal_slice(&state, &viewer, id.into_inner()).await?;
    let user = session.user.clone();
    let staff_on_other = user.id != slice.user_id;
    let ip = viewer.ip.to_string();
    let (slice_id, name) = (slice.id, slice.subdomain.clone());
    let detail = format!(
        "terminal in {name} by {}{}",
        user.username,
        if staff_on_other { " (staff)" } else { "" }
    );
    let who = user.username.to_string();
    state
        .run(move |db| {
            db.write(|tx| {
                audit::record(
                    tx,
                    audit::Event::TerminalOpened,
                    &audit::Actor {
                        user_id: Some(user.id),
                        ip: &ip,
                    },
                    crate::records::audit::Subject::Slice(slice_id),
                    &detail,
                )?;
                if staff_on_other {
                    crate::records::slices::event(
                        tx,
                        slice_id,
                        &format!("{who} of the lab staff opened a terminal in this slice."),
                    )?;
                }
                Ok::<_, Error>(())
            })
        })
        .await?;
    tracing::info!(slice_id, owner = %owner, by = %session.user.username, "terminal opened");
    let (res, ws, stream) =
        actix_ws::handle(&req, body).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let ctx = state.ctx.clone();
    let (cols, rows) = (open.cols.clamp(10, 500), open.rows.clamp(5, 200));
    actix_web::rt::spawn(pump(ctx, slice_id, cols, rows, ws, stream));
    Ok(res)
}

/// Passes bytes between the websocket and the slice's shell until either ends.
async fn pump(
    ctx: std::sync::Arc<crate::context::Context>,
    slice_id: i64,
    cols: u32,
    rows: u32,
    mut ws: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
) {
    use futures_util::StreamExt as _;
    let shell = match crate::ssh_gateway::open_shell(&ctx, slice_id, cols, rows).await {
        Ok(s) => s,
        Err(line) => {
            let _ = ws.binary(format!("{line}\r\n").into_bytes()).await;
            let _ = ws.close(None).await;
            return;
        }
    };
    let (mut read, write) = shell.channel.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(actix_ws::Message::Binary(b))) => {
                    if write.data_bytes(b).await.is_err() { break; }
                }
                Some(Ok(actix_ws::Message::Text(t))) => {
                    if let Ok(r) = serde_json::from_str::<Resize>(&t) {
                        let _ = write
                            .window_change(r.cols.clamp(10, 500), r.rows.clamp(5, 200), 0, 0)
                            .await;
                    }
                }
                Some(Ok(actix_ws::Message::Ping(p))) => {
                    if ws.pong(&p).await.is_err() { break; }
                }
                Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = read.wait() => match out {
                Some(russh::ChannelMsg::Data { data }) | Some(russh::ChannelMsg::ExtendedData { data, .. }) => {
                    if ws.binary(data).await.is_err() { break; }
                }
                Some(russh::ChannelMsg::ExitStatus { .. }) | Some(russh::ChannelMsg::Eof) => {}
                Some(russh::ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    let _ = write.close().await;
    let _ = ws.close(None).await;
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(socket);
}
