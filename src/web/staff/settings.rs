//! The settings in force (`/staff/settings`), read-only: the configuration always wins.

use crate::web::error::WebError;
use crate::web::extract::session::StaffOnly;
use crate::web::page::Page;
use crate::web::State;
use actix_web::{get, web, HttpRequest, HttpResponse};

#[get("/settings")]
async fn settings_page(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
) -> Result<HttpResponse, WebError> {
    let cfg = &state.ctx.config;
    let all = cfg.effective();
    // In the order they are documented (related settings together), each with its default
    // and where its value came from.
    let rows: Vec<serde_json::Value> = crate::config::Config::documented()
        .into_iter()
        .filter_map(|(k, default, doc)| {
            let value = all.get(k)?;
            let changed = *value != default;
            Some(serde_json::json!({
                "key": k,
                "value": value,
                "default": default,
                "changed": changed,
                "source": cfg.sources.get(k).cloned().unwrap_or_else(|| "built-in default".into()),
                "doc": doc.replace('\n', " "),
            }))
        })
        .collect();
    let changed = rows.iter().filter(|r| r["changed"] == true).count();
    Page::new("staff/settings.html")
        .with("rows", &rows)
        .with("changed", &changed)
        .render(&state, &req, &viewer)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(settings_page);
}
