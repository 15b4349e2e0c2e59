//! The archive of a slice's /home (`/slices/ID/archive`): ask for one, watch it being packed,
//! download it. The download streams from the slice's node through the master, piece by
//! piece, checked by SHA-256 (`Links::read_archive`): the master never holds it whole.

use crate::error::Error;
use crate::ops::accounts::audit;
use crate::ops::archives;
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::LoggedIn;
use crate::web::page::{refused, see_other, Page};
use crate::web::State;
use actix_web::{get, http::header, post, web, HttpRequest, HttpResponse};

#[get("/slices/{id}/archive")]
async fn page(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (id, user) = (id.into_inner(), session.user.clone());
    let v = state.read(move |c| archives::view(c, &user, id)).await?;
    let size = v
        .export
        .as_ref()
        .and_then(|e| e.size)
        .map(crate::domain::size_text)
        .unwrap_or_default();
    let ready_at = v
        .export
        .as_ref()
        .and_then(|e| e.ready_at)
        .map(crate::clock::format_time)
        .unwrap_or_default();
    Page::new("archive.html")
        .with("v", &v)
        .with("size", &size)
        .with("ready_at", &ready_at)
        .with(
            "file",
            &file_name(
                &v.slice.hostname,
                v.export.as_ref().and_then(|e| e.ready_at),
            ),
        )
        .render(&state, &req, &viewer)
}

/// `HOST-home-YYYY-MM-DD.tar.gz` (the day it was packed).
fn file_name(host: &str, at: Option<i64>) -> String {
    let day = at.map(crate::clock::format_day).unwrap_or_default();
    format!("{host}-home-{day}.tar.gz")
}

#[post("/slices/{id}/archive")]
async fn ask(
    state: State,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
    _posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (id, user) = (id.into_inner(), session.user.clone());
    let to = format!("/slices/{id}/archive");
    let result = state
        .run(move |db| db.write(|tx| archives::ask(tx, &user, id, crate::store::now())))
        .await;
    match result {
        Ok(()) => Ok(see_other(
            &state,
            &to,
            Some("Packing your /home; this page shows when it is ready."),
        )),
        Err(Error::Forbidden(why)) => Ok(refused(&state, &to, &why)),
        Err(e) => Err(e.into()),
    }
}

/// Where a browser resuming a download asks to start: `Range: bytes=N-` (the one form
/// browsers send to resume), honoured only with no `If-Range` or one naming this archive.
fn resume_from(req: &HttpRequest, etag: &str, size: u64) -> Option<u64> {
    let range = req.headers().get(header::RANGE)?.to_str().ok()?;
    if let Some(tag) = req.headers().get(header::IF_RANGE) {
        if tag.to_str().ok()? != etag {
            return None;
        }
    }
    let from: u64 = range
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()?;
    (from > 0 && from < size).then_some(from)
}

#[get("/slices/{id}/archive/home.tar.gz")]
async fn download(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (id, user) = (id.into_inner(), session.user.clone());
    let ip = viewer.ip.clone();
    let (export, node, host) = state
        .run(move |db| {
            db.write(|tx| {
                let (export, node) = archives::ready(tx, &user, id)?;
                let host = crate::ops::slices::get(tx, id)?
                    .map(|s| s.hostname)
                    .unwrap_or_default();
                audit::record(
                    tx,
                    audit::Event::ArchiveDownloaded,
                    &audit::Actor {
                        user_id: Some(user.id),
                        ip: &ip,
                    },
                    audit::Subject::Slice(id),
                    export.sha256.as_deref().unwrap_or(""),
                )?;
                Ok((export, node, host))
            })
        })
        .await?;
    let (Some(size), Some(sha)) = (
        export.size,
        export
            .sha256
            .as_deref()
            .and_then(|s| crate::templates::Sha256Hex::parse(s).ok()),
    ) else {
        return Err(WebError::NotFound);
    };
    let veid = crate::domain::VeId::new(export.veid as u64).map_err(|_| WebError::NotFound)?;
    let size = size as u64;
    let etag = format!("\"{sha}\"");
    let from = resume_from(&req, &etag, size);
    let links = state
        .agents()
        .map_err(|e| WebError::Internal(e.context("the link to the nodes")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<std::io::Error>();
    tokio::spawn(async move {
        if let Err(e) = links
            .read_archive(&node, (veid, &sha, size), from.unwrap_or(0), tx)
            .await
        {
            tracing::warn!(slice = id, node = %node.name, error = %e, "archive download cut short");
            let _ = fail_tx.send(std::io::Error::other(e.to_string()));
        }
    });
    // The pieces as they come; if the reading fails, the body ends in an error (the browser
    // sees a broken download, never a short file that looks whole: the length was promised).
    let body = futures_util::stream::unfold((rx, Some(fail_rx)), |(mut rx, fail)| async move {
        match rx.recv().await {
            Some(b) => Some((Ok::<_, std::io::Error>(b), (rx, fail))),
            None => match fail {
                Some(f) => match f.await {
                    Ok(e) => Some((Err(e), (rx, None))),
                    Err(_) => None,
                },
                None => None,
            },
        }
    });
    let mut answer = match from {
        Some(n) => {
            let mut a = HttpResponse::PartialContent();
            a.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {n}-{}/{size}", size - 1),
            ));
            a
        }
        None => HttpResponse::Ok(),
    };
    Ok(answer
        .content_type("application/gzip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"{}\"",
                file_name(&host, export.ready_at)
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            "x-content-sha256",
            export.sha256.clone().unwrap_or_default(),
        ))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::ETAG, etag))
        .no_chunking(size - from.unwrap_or(0))
        .streaming(body))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(ask).service(download);
}
