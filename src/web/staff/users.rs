//! Users (`/staff/users`): search, a user's page, roles, disabling, confirming an
//! address by hand; the audit log (`/staff/audit`).

use crate::domain::Role;
use crate::error::Error;
use crate::ops::accounts::{self, audit, users, Event};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{url_escape, StaffOnly};
use crate::web::page::{see_other, Page, Pager};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Serialize, Default)]
pub struct UserQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    role: String,
    page: Option<u64>,
}

#[get("/users")]
async fn user_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    query: web::Query<UserQuery>,
) -> Result<HttpResponse, WebError> {
    let query = query.into_inner();
    let role = if query.role.is_empty() {
        None
    } else {
        Some(Role::parse(&query.role).map_err(|e| WebError::BadRequest(e.message))?)
    };
    if query.q.chars().count() > 200 {
        return Err(WebError::BadRequest(
            "A search has at most 200 characters.".into(),
        ));
    }
    let q = query.q.clone();
    let offset = Pager::offset_for(query.page, PER_PAGE);
    let policy = state.ctx.policy;
    let ((rows, total), slowed) = state
        .read(move |c| {
            // Accounts whose log-ins are being slowed now (failed tries in the window).
            let since = crate::store::now() - policy.window_secs;
            let slowed = crate::ops::accounts::audit::slowed_accounts(
                c,
                crate::ops::accounts::Event::LoginFailed,
                since,
                policy.max_failures_per_account,
            )?;
            Ok::<_, crate::error::Error>((users::search(c, &q, role, PER_PAGE, offset)?, slowed))
        })
        .await?;
    let pager = Pager::new(query.page, PER_PAGE, total);
    let link = format!(
        "q={}&role={}",
        url_escape(&query.q),
        url_escape(&query.role)
    );
    Page::new("staff/users.html")
        .with("users", &rows)
        .with("query", &query)
        .with("pager", &pager)
        .with("link", &link)
        .with("roles", &Role::ALL)
        .with(
            "slowed",
            &slowed
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["link"] = format!(
                        "/staff/audit?kind=account&subject={}",
                        url_escape(&s.subject)
                    )
                    .into();
                    v
                })
                .collect::<Vec<_>>(),
        )
        .with("window_minutes", &(policy.window_secs / 60))
        .render(&state, &req, &viewer)
}

async fn user_page(
    state: &State,
    req: &HttpRequest,
    viewer: &crate::web::extract::session::Viewer,
    username: String,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let (user, events, sessions, gateway_problem) = state
        .run(move |db| {
            db.read(|c| {
                let user = users::by_username(c, &username)?.ok_or(Error::NotFound("user"))?;
                let (events, _) = audit::list(
                    c,
                    &audit::Filter {
                        kind: Some("account"),
                        subject: Some(&user.username),
                        ..Default::default()
                    },
                    20,
                    0,
                )?;
                let sessions = accounts::sessions::count_for(c, user.id)?;
                let gateway = crate::records::gateway::problem(c, user.id)?;
                Ok::<_, Error>((user, events, sessions, gateway))
            })
        })
        .await?;
    let mut page = Page::new("staff/user.html")
        .with("user", &user)
        .with("events", &events)
        .with("session_count", &sessions)
        .with("gateway_problem", &gateway_problem)
        .with("roles", &Role::ALL)
        .with("directory", &state.ctx.directory.is_some());
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[get("/users/{username}")]
async fn user_detail(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    username: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    user_page(&state, &req, &viewer, username.into_inner(), None).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
pub struct DisableForm {
    #[serde(default)]
    reason: String,
}

/// What an action on one user did, and how it ends: a notice, or the page again with errors.
async fn act(
    state: &State,
    req: &HttpRequest,
    viewer: &crate::web::extract::session::Viewer,
    username: String,
    result: Result<accounts::User, Error>,
    notice: impl FnOnce(&accounts::User) -> String,
) -> Result<HttpResponse, WebError> {
    match result {
        Ok(user) => Ok(see_other(
            state,
            &format!("/staff/users/{}", url_escape(&user.username)),
            Some(&notice(&user)),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            user_page(state, req, viewer, username, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/users/{username}/role")]
async fn set_role(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<RoleForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let username = username.into_inner();
    let role = Role::parse(&form.role).map_err(|e| WebError::BadRequest(e.message))?;
    let (actor, ip, name) = (session.user.clone(), viewer.ip.clone(), username.clone());
    let result = state
        .run(move |db| accounts::set_role(db, &actor, &name, role, &ip))
        .await;
    act(&state, &req, &viewer, username, result, |u| {
        format!("{} is now {}.", u.username, u.role)
    })
    .await
}

#[post("/users/{username}/disable")]
async fn disable(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<DisableForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let username = username.into_inner();
    let (actor, ip, name) = (session.user.clone(), viewer.ip.clone(), username.clone());
    let result = state
        .run(move |db| accounts::disable(db, &actor, &name, &form.reason, &ip))
        .await;
    act(&state, &req, &viewer, username, result, |u| {
        format!("{} is disabled and logged out everywhere.", u.username)
    })
    .await
}

#[post("/users/{username}/enable")]
async fn enable(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let viewer = posted.viewer;
    let username = username.into_inner();
    let (actor, ip, name) = (session.user.clone(), viewer.ip.clone(), username.clone());
    let result = state
        .run(move |db| accounts::enable(db, &actor, &name, &ip))
        .await;
    act(&state, &req, &viewer, username, result, |u| {
        format!("{} is enabled again.", u.username)
    })
    .await
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    confirm: String,
}

/// Hands a local account over to the college directory (after a clash the audit log shows).
#[post("/users/{username}/link")]
async fn link_to_directory(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<LinkForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let username = username.into_inner();
    let Some(source) = state.ctx.link_source() else {
        let e = Error::Forbidden(
            "There is no college directory or single sign-on to link to (ldap_url, oidc_issuer)."
                .into(),
        );
        return user_page(&state, &req, &viewer, username, Some(&e)).await;
    };
    if form.confirm != "yes" {
        let e = Error::Invalid(vec![crate::domain::FieldError::new(
            "confirm",
            "Tick the box to say the directory's account of this name is this person's.",
        )]);
        return user_page(&state, &req, &viewer, username, Some(&e)).await;
    }
    let (actor, ip, name) = (session.user.clone(), viewer.ip.clone(), username.clone());
    let result = state
        .run(move |db| accounts::link_to_directory(db, &name, source, Some(&actor), &ip))
        .await;
    act(&state, &req, &viewer, username, result, move |u| {
        format!(
            "{} now logs in through {}; its password here is gone.",
            u.username,
            accounts::external::source_words(source)
        )
    })
    .await
}

#[derive(Deserialize, Serialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    event: String,
    /// `account`, `slice`, `node`...: what the subject names (any when empty).
    #[serde(default)]
    kind: String,
    #[serde(default)]
    subject: String,
    page: Option<u64>,
}

#[get("/audit")]
async fn audit_log(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, WebError> {
    let query = query.into_inner();
    let event = if query.event.is_empty() {
        None
    } else {
        Some(
            Event::parse(&query.event)
                .ok_or_else(|| WebError::BadRequest("No such event kind.".into()))?,
        )
    };
    let kind = match query.kind.as_str() {
        "" => None,
        k => Some(
            *audit::Subject::KINDS
                .iter()
                .find(|known| **known == k)
                .ok_or_else(|| WebError::BadRequest("No such kind of subject.".into()))?,
        ),
    };
    let subject = (!query.subject.trim().is_empty()).then(|| query.subject.trim().to_string());
    let offset = Pager::offset_for(query.page, PER_PAGE);
    let (rows, total) = state
        .read(move |c| {
            let filter = audit::Filter {
                event,
                kind,
                subject: subject.as_deref(),
            };
            audit::list(c, &filter, PER_PAGE, offset)
        })
        .await?;
    let pager = Pager::new(query.page, PER_PAGE, total);
    let events: Vec<_> = Event::ALL
        .iter()
        .map(|e| serde_json::json!({ "name": e.as_str(), "label": e.label() }))
        .collect();
    let link = format!(
        "event={}&kind={}&subject={}",
        url_escape(&query.event),
        url_escape(&query.kind),
        url_escape(&query.subject)
    );
    Page::new("staff/audit.html")
        .with("entries", &rows)
        .with("query", &query)
        .with("pager", &pager)
        .with("link", &link)
        .with("events", &events)
        .with("kinds", &audit::Subject::KINDS)
        .render(&state, &req, &viewer)
}

#[post("/users/{username}/verify")]
async fn staff_verify(
    state: State,
    StaffOnly(_, session): StaffOnly,
    username: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let (actor, ip, name) = (
        session.user.clone(),
        posted.viewer.ip.clone(),
        username.into_inner(),
    );
    let user = state
        .run(move |db| accounts::verify_by_staff(db, &actor, &name, &ip))
        .await?;
    Ok(see_other(
        &state,
        &format!(
            "/staff/users/{}",
            crate::web::extract::session::url_escape(&user.username)
        ),
        Some(&format!("{} is confirmed by hand.", user.email)),
    ))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(user_list)
        .service(user_detail)
        .service(set_role)
        .service(disable)
        .service(enable)
        .service(link_to_directory)
        .service(audit_log)
        .service(staff_verify);
}
