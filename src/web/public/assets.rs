//! What every page needs and every monitor asks: the stylesheet and script
//! (`/static/...`, compiled into the binary) and the health check (`/healthz`).

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};

use crate::web::State;

const STYLE: &str = include_str!("../../../static/style.css");
const SCRIPT: &str = include_str!("../../../static/app.js");

#[get("/static/app.js")]
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(SCRIPT)
}

#[get("/static/style.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLE)
}

const ICON: &str = include_str!("../../../static/favicon.svg");

/// The tab's icon (also where browsers look for it on their own).
#[get("/{file:static/favicon.svg|favicon.ico}")]
async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(ICON)
}

const TERMINAL: &str = include_str!("../../../static/terminal.js");
const XTERM: &str = include_str!("../../../static/vendor/xterm/xterm.js");
const XTERM_CSS: &str = include_str!("../../../static/vendor/xterm/xterm.css");
const XTERM_FIT: &str = include_str!("../../../static/vendor/xterm/addon-fit.js");

/// The browser terminal's script and the vendored xterm.js (see static/vendor/xterm).
#[get("/static/{file:terminal.js|vendor/xterm/xterm.js|vendor/xterm/xterm.css|vendor/xterm/addon-fit.js}")]
async fn terminal_assets(file: web::Path<String>) -> HttpResponse {
    let (body, kind) = match file.as_str() {
        "terminal.js" => (TERMINAL, "text/javascript; charset=utf-8"),
        "vendor/xterm/xterm.js" => (XTERM, "text/javascript; charset=utf-8"),
        "vendor/xterm/addon-fit.js" => (XTERM_FIT, "text/javascript; charset=utf-8"),
        _ => (XTERM_CSS, "text/css; charset=utf-8"),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

#[get("/healthz")]
async fn healthz(state: State) -> HttpResponse {
    let db = state.ctx.db.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let version = db.ping()?;
        // After a write failed for lack of storage: failing until one can be written.
        if db.write_failure().is_some() {
            let _ = db.probe_write();
        }
        Ok::<_, crate::store::StoreError>((version, db.write_failure()))
    })
    .await;
    match checked {
        Ok(Ok((_, Some(failure)))) => HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::RETRY_AFTER, "60"))
            .json(serde_json::json!({
                "status": "failing",
                "reason": format!("the database cannot be written: {failure}"),
            })),
        Ok(Ok((version, None))) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "schema": version,
            })),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: database");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "unhealthy", "reason": "database does not answer"
            }))
        }
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "unhealthy", "reason": e.to_string()
        })),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(stylesheet)
        .service(script)
        .service(icon)
        .service(terminal_assets)
        .service(healthz);
}
