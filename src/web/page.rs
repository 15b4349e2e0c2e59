//! Pages: the embedded templates (an operator's folder may replace any of them) and the one
//! function that renders a page with what every page shows.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use tera::{Context, Tera};

use crate::web::error::WebError;
use crate::web::extract::session::{
    clear_flash_cookie, cookie, csrf_cookie_name, flash_cookie, Viewer,
};
use crate::web::State;

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$( ($name, include_str!(concat!("../../templates/", $name))), )*]
    };
}

/// Every template, compiled into the binary.
pub const TEMPLATES: &[(&str, &str)] = embedded![
    "base.html",
    "macros.html",
    "home.html",
    "slice_card.html",
    "login.html",
    "signup.html",
    "setup.html",
    "account.html",
    "staff/users.html",
    "staff/user.html",
    "staff/audit.html",
    "staff/outbox.html",
    "staff/message.html",
    "verify.html",
    "forgot.html",
    "reset.html",
    "request.html",
    "staff/requests.html",
    "staff/slices.html",
    "staff/slice_row.html",
    "staff/slice.html",
    "terminal.html",
    "staff/jobs.html",
    "staff/job.html",
    "staff/nodes.html",
    "staff/node_new.html",
    "staff/node_added.html",
    "staff/templates.html",
    "staff/plans.html",
    "staff/gateway.html",
    "staff/settings.html",
    "keys.html",
    "key_remove.html",
    "extend.html",
    "staff/courses.html",
    "staff/roster.html",
    "archive.html",
    "reinstall.html",
    "snapshots.html",
];

/// Loads the embedded templates, replacing any that `dir` has a file of the same name for.
pub fn load_templates(dir: Option<&std::path::Path>) -> anyhow::Result<Tera> {
    let mut owned: Vec<(String, String)> = Vec::new();
    for (name, text) in TEMPLATES {
        let replaced = dir
            .map(|d| d.join(name))
            .filter(|p| p.is_file())
            .map(std::fs::read_to_string)
            .transpose()?;
        if replaced.is_some() {
            tracing::info!(template = name, "using the operator's template");
        }
        owned.push((
            name.to_string(),
            replaced.unwrap_or_else(|| text.to_string()),
        ));
    }
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".html"]);
    tera.add_raw_templates(owned)?;
    tera.register_filter("when", When);
    // `{{ text | url }}`: percent-escaped for a query string or a path segment.
    tera.register_filter(
        "url",
        |v: &tera::Value, _: &std::collections::HashMap<String, tera::Value>| {
            Ok(tera::Value::String(
                crate::web::extract::session::url_escape(v.as_str().unwrap_or_default()),
            ))
        },
    );
    Ok(tera)
}

/// `{{ t | when }}`: Unix seconds as `<time datetime="2026-11-29T14:05:00Z">2026-11-29 14:05
/// UTC</time>`; the page's script shows it in the viewer's zone ("3 min ago", the exact time on
/// hover). Safe as it is: it writes only digits and fixed text.
struct When;

impl tera::Filter for When {
    fn filter(
        &self,
        value: &tera::Value,
        _: &std::collections::HashMap<String, tera::Value>,
    ) -> tera::Result<tera::Value> {
        Ok(tera::Value::String(match value.as_i64() {
            Some(t) => time_html(t),
            None => String::new(),
        }))
    }

    fn is_safe(&self) -> bool {
        true
    }
}

pub use crate::clock::format_time;

/// Unix seconds as the `when` filter writes them (for views that write it beforehand).
pub fn time_html(t: i64) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("<time datetime=\"");
    s.push_str(&crate::clock::format_rfc3339(t));
    s.push_str("\">");
    s.push_str(&format_time(t));
    s.push_str("</time>");
    s
}

/// What a page shows of the viewer.
#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    display_name: &'a str,
    role: &'a str,
    is_staff: bool,
    is_admin: bool,
    verified: bool,
    email: &'a str,
}

/// A page's data: the template's own values plus the viewer, form token and notice.
pub struct Page {
    pub name: &'static str,
    pub ctx: Context,
    pub status: StatusCode,
}

impl Page {
    pub fn new(name: &'static str) -> Page {
        let mut ctx = Context::new();
        ctx.insert("errors", &std::collections::BTreeMap::<&str, String>::new());
        Page {
            name,
            ctx,
            status: StatusCode::OK,
        }
    }

    pub fn with(mut self, key: &str, value: &impl Serialize) -> Page {
        self.ctx.insert(key, value);
        self
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    /// The page with form errors (`errors.FIELD`) and a status.
    pub fn errors(mut self, err: &crate::error::Error) -> Page {
        use crate::error::Error;
        let mut map = std::collections::BTreeMap::new();
        let (status, general) = match err {
            Error::Invalid(list) => {
                for e in list {
                    map.entry(e.field).or_insert_with(|| e.message.clone());
                }
                (StatusCode::UNPROCESSABLE_ENTITY, None)
            }
            Error::Throttled(m) => (StatusCode::TOO_MANY_REQUESTS, Some(m.clone())),
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, Some(m.clone())),
            Error::NotFound(what) => (StatusCode::NOT_FOUND, Some(format!("No such {what}."))),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        self.ctx.insert("errors", &map);
        if let Some(g) = general {
            self.ctx.insert("error", &g);
        }
        self.status = status;
        self
    }

    pub fn render(
        mut self,
        state: &State,
        req: &HttpRequest,
        viewer: &Viewer,
    ) -> Result<HttpResponse, WebError> {
        if let Some(u) = viewer.user() {
            self.ctx.insert(
                "me",
                &Me {
                    username: &u.username,
                    display_name: &u.display_name,
                    role: u.role.as_str(),
                    is_staff: u.role.is_staff(),
                    is_admin: u.role == crate::domain::Role::Admin,
                    verified: u.email_verified_at.is_some(),
                    email: &u.email,
                },
            );
        }
        self.ctx.insert("csrf", &viewer.csrf_token(state));
        self.ctx.insert("path", req.path());
        let flash = Viewer::flash(req, state);
        if let Some(f) = &flash {
            // A refusal is said in the alert style, a done action in the notice style.
            let (refused, text) = match (f.strip_prefix("no:"), f.strip_prefix("ok:")) {
                (Some(why), _) => (true, why),
                (None, Some(done)) => (false, done),
                (None, None) => (false, f.as_str()),
            };
            self.ctx.insert("flash", text);
            self.ctx.insert("flash_refused", &refused);
        }
        let body = state.templates.render(self.name, &self.ctx)?;
        let mut resp = HttpResponse::build(self.status);
        resp.content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(basis) = &viewer.new_csrf_cookie {
            resp.cookie(cookie(
                state,
                csrf_cookie_name(state.https),
                basis.clone(),
                86400 * 7,
            ));
        }
        if flash.is_some() {
            resp.cookie(clear_flash_cookie(state));
        }
        Ok(resp.body(body))
    }
}

/// A redirect after a successful form, with a notice for the next page.
/// Back to `to` with a notice after an action: `ok`'s text when it was done, or why it was
/// not (an invalid or refused action is a notice on the page, not an error page). Any other
/// failure is an error.
pub fn done_or_refused<T>(
    state: &State,
    to: &str,
    result: crate::error::Result<T>,
    ok: impl FnOnce(T) -> String,
) -> Result<HttpResponse, WebError> {
    use crate::error::Error;
    let why = match result {
        Ok(v) => return Ok(see_other(state, to, Some(&ok(v)))),
        Err(Error::Invalid(errors)) => errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join(" "),
        Err(Error::Forbidden(m)) => m,
        Err(e) => return Err(e.into()),
    };
    Ok(refused(state, to, &why))
}

pub fn see_other(state: &State, to: &str, notice: Option<&str>) -> HttpResponse {
    redirect(state, to, notice.map(|n| format!("ok:{n}")))
}

/// Back to `to`, saying why an action was not done (in the alert style).
pub fn refused(state: &State, to: &str, why: &str) -> HttpResponse {
    redirect(state, to, Some(format!("no:{why}")))
}

fn redirect(state: &State, to: &str, flash: Option<String>) -> HttpResponse {
    let mut resp = HttpResponse::SeeOther();
    resp.insert_header((header::LOCATION, to.to_string()));
    if let Some(f) = flash {
        resp.cookie(flash_cookie(state, &f));
    }
    resp.finish()
}

/// Page numbers for a list.
#[derive(Debug, Serialize)]
pub struct Pager {
    pub page: u64,
    pub pages: u64,
    pub total: u64,
    pub per_page: u32,
    pub prev: Option<u64>,
    pub next: Option<u64>,
}

impl Pager {
    pub fn new(page: Option<u64>, per_page: u32, total: u64) -> Pager {
        let pages = total.div_ceil(per_page as u64).max(1);
        let page = page.unwrap_or(1).clamp(1, pages);
        Pager {
            page,
            pages,
            total,
            per_page,
            prev: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
        }
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1) * self.per_page as u64
    }

    /// The page asked for, before the total is known.
    pub fn offset_for(page: Option<u64>, per_page: u32) -> u64 {
        page.unwrap_or(1).max(1).saturating_sub(1) * per_page as u64
    }
}
