//! The student's dashboard (`/`), the request form (`/request`) and a slice's actions and
//! live status (`/slices/ID/...`).

use crate::error::Error;
use crate::jobs::JobKind;
use crate::mail::Site;
use crate::ops::slices::{self, Slice, State as SliceState};
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::{LoggedIn, Viewer};
use crate::web::page::{done_or_refused, see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What the dashboard shows of one slice: flat, and only what the card reads, because the
/// template engine pays an allocation per segment of every dotted name it looks up (it was a
/// fifth of the page's CPU with the whole `Slice` nested inside).
#[derive(Serialize)]
pub struct SliceView {
    pub id: i64,
    pub state: SliceState,
    pub subdomain: String,
    pub hostname: String,
    pub step: String,
    pub failure: String,
    pub template: String,
    pub ip: Option<String>,
    pub node: Option<String>,
    pub ssh: String,
    pub web: String,
    pub place: Option<i64>,
    /// Percent on the way to running, while it is.
    pub progress: Option<u8>,
    /// The newest usage of each resource, and a chart of memory over the last day.
    pub usage: Vec<crate::ops::usage::Latest>,
    pub chart: String,
    pub events: Vec<CardEvent>,
    pub busy: bool,
    /// What is being done to it now ("Stopping…"), while a job is in flight.
    pub pending: Option<String>,
    /// Its node runs the simulator: no machine is behind it (said on the card).
    pub simulated: bool,
    /// Its end, when it has one (its own date or its course's).
    pub end: Option<EndView>,
}

/// A slice's end as its card shows it.
#[derive(Serialize)]
pub struct EndView {
    /// Its last day, `2026-12-18`.
    pub last_day: String,
    /// Whole days left (0 once it has ended).
    pub days_left: i64,
    pub ended: bool,
    /// Within 14 days of its end, or past it: the card says so plainly.
    pub near: bool,
    /// The last day asked for in a request for more time that waits for staff.
    pub asked_until: Option<String>,
    /// The day it is destroyed if nothing changes (its end and the grace period after).
    pub destroy_day: String,
}

/// One of a card's recent events, its time already written as the page shows it.
#[derive(Serialize)]
pub struct CardEvent {
    pub at: i64,
    /// `<time datetime=…>…</time>`, as the `when` filter writes it.
    pub when: String,
    pub message: String,
}

impl From<slices::Event> for CardEvent {
    fn from(e: slices::Event) -> CardEvent {
        CardEvent {
            at: e.at,
            when: crate::web::page::time_html(e.at),
            message: e.message,
        }
    }
}

fn busy(state: SliceState) -> bool {
    matches!(
        state,
        SliceState::Requested
            | SliceState::Approved
            | SliceState::Queued
            | SliceState::Provisioning
            | SliceState::Destroying
    )
}

/// What the cards show besides the slices themselves, read for one slice or for all of a
/// user's at once (a statement each, however many slices).
#[derive(Default)]
struct Facts {
    usage: HashMap<i64, Vec<crate::ops::usage::Latest>>,
    in_flight: HashMap<i64, (JobKind, String)>,
    /// Nodes read so far (a user's slices share few): name, and whether it is simulated.
    nodes: HashMap<i64, Option<(String, bool)>>,
    /// Courses' ends read so far.
    course_ends: HashMap<String, Option<i64>>,
}

impl Facts {
    fn for_user(c: &rusqlite::Connection, user_id: i64) -> crate::error::Result<Facts> {
        Ok(Facts {
            usage: crate::ops::usage::latest_for_user(c, user_id)?,
            in_flight: crate::records::jobs::in_flight_for_user(c, user_id)?,
            nodes: HashMap::new(),
            course_ends: HashMap::new(),
        })
    }

    fn for_slice(c: &rusqlite::Connection, s: &Slice) -> crate::error::Result<Facts> {
        let mut facts = Facts::default();
        facts
            .usage
            .insert(s.id, crate::ops::usage::latest(c, s.id)?);
        if let Some(job) = crate::records::jobs::in_flight_kind(c, s.id)? {
            facts.in_flight.insert(s.id, job);
        }
        Ok(facts)
    }
}

fn view(
    c: &rusqlite::Connection,
    site: &Site,
    username: &str,
    s: Slice,
    facts: &mut Facts,
) -> crate::error::Result<SliceView> {
    let node = match s.node_id {
        Some(id) => match facts.nodes.get(&id) {
            Some(n) => n.clone(),
            None => {
                let n = crate::records::nodes::name_and_simulated(c, id)?;
                facts.nodes.insert(id, n.clone());
                n
            }
        },
        None => None,
    };
    let simulated = node.as_ref().is_some_and(|n| n.1);
    let node = node.map(|n| n.0);
    let place = if s.state == SliceState::Queued {
        Some(slices::queue_position(c, &s)?)
    } else {
        None
    };
    let (usage, chart) = match facts.usage.remove(&s.id) {
        Some(latest)
            if !latest.is_empty()
                && matches!(s.state, SliceState::Running | SliceState::Stopped) =>
        {
            crate::web::chart::with_chart(c, s.id, &s.hostname, latest)?
        }
        _ => (vec![], String::new()),
    };
    let in_flight = facts.in_flight.remove(&s.id);
    let pending = match in_flight {
        // The node does not answer: said plainly, whatever was under way.
        Some((_, ref note)) if crate::records::jobs::waits_for_node(note) => Some(format!(
            "Waiting for node {}, which does not answer right now; this goes on when it does.",
            node.as_deref().unwrap_or("?")
        )),
        Some((JobKind::Start, _)) => Some("Starting…".into()),
        Some((JobKind::Stop, _)) => Some("Stopping…".into()),
        Some((JobKind::Restart, _)) => Some("Restarting…".into()),
        Some((JobKind::Limits, _)) => Some("Applying the new plan…".into()),
        Some((JobKind::Move, _)) if s.step == slices::STEPS[5] => {
            Some("Removing the old container…".into())
        }
        Some((JobKind::Move, _)) => Some("Being made anew, its /home carried over…".into()),
        Some((JobKind::Snapshots, _)) => Some("Working on its snapshots…".into()),
        Some((JobKind::Keys, _)) => Some("Updating the keys…".into()),
        _ => None,
    };
    let ends = match (s.expires_at, s.course.as_str()) {
        (Some(t), _) => Some(t),
        (None, "") => None,
        (None, course) => match facts.course_ends.get(course) {
            Some(t) => *t,
            None => {
                let t = crate::records::courses::ends_at(c, course)?;
                facts.course_ends.insert(course.to_string(), t);
                t
            }
        },
    };
    let end = match ends {
        Some(t) if !matches!(s.state, SliceState::Denied | SliceState::Destroyed) => {
            let at = crate::store::now();
            Some(EndView {
                last_day: crate::ops::term::last_day(t),
                days_left: crate::ops::term::days_left(t, at),
                ended: at >= t,
                near: at >= t - crate::records::courses::WARN_14,
                asked_until: crate::ops::term::waiting_extension(c, s.id)?
                    .map(|e| crate::ops::term::last_day(e.until)),
                destroy_day: crate::clock::format_day(t + site.grace_days as i64 * 86_400),
            })
        }
        _ => None,
    };
    Ok(SliceView {
        end,
        usage,
        chart,
        events: (crate::records::slices::recent_events(c, s.id)?.into_iter())
            .map(CardEvent::from)
            .collect(),
        ssh: site.ssh_command(site.login_name(username, &s.subdomain)),
        web: site.web_address(&s.subdomain),
        busy: busy(s.state) || pending.is_some(),
        pending,
        simulated,
        progress: slices::progress(&s),
        node,
        place,
        id: s.id,
        state: s.state,
        subdomain: s.subdomain,
        hostname: s.hostname,
        step: s.step,
        failure: s.failure,
        template: s.template,
        ip: s.ip,
    })
}

#[get("/")]
async fn home(state: State, req: HttpRequest, viewer: Viewer) -> Result<HttpResponse, WebError> {
    let Some(user) = viewer.user().cloned() else {
        let site = state.ctx.site();
        return Page::new("home.html")
            .with("example_web", &site.web_address("your-name"))
            .with("terminal", &site.terminal)
            .render(&state, &req, &viewer);
    };
    let site = state.ctx.site();
    let (builtin_ssh, builtin_terminal) = (site.builtin_ssh, site.terminal);
    let (views, keys) = state
        .read_now(move |c| {
            let mut facts = Facts::for_user(c, user.id)?;
            let views = slices::for_user(c, user.id)?
                .into_iter()
                .filter(|s| s.state != SliceState::Destroyed)
                .map(|s| view(c, &site, &user.username, s, &mut facts))
                .collect::<crate::error::Result<Vec<_>>>()?;
            let keys = crate::records::ssh_keys::count(c, user.id)?;
            Ok::<_, Error>((views, keys))
        })
        .await?;
    let fingerprint = builtin_ssh
        .then(|| crate::ssh_gateway::fingerprint(&state.ctx.config.data))
        .flatten();
    let csrf = viewer.csrf_token(&state);
    let cards = views
        .iter()
        .map(|slice| {
            card(
                &state,
                &CardValues {
                    slice,
                    csrf: &csrf,
                    has_keys: keys > 0,
                    terminal: builtin_terminal,
                    gateway_fingerprint: fingerprint.as_deref(),
                },
            )
        })
        .collect::<Result<Vec<_>, WebError>>()?;
    Page::new("home.html")
        .with("cards", &cards.iter().map(|c| &**c).collect::<Vec<&str>>())
        .render(&state, &req, &viewer)
}

/// Everything a card shows: its slice's values and the page's few it shares.
#[derive(Serialize)]
struct CardValues<'a> {
    #[serde(flatten)]
    slice: &'a SliceView,
    csrf: &'a str,
    has_keys: bool,
    terminal: bool,
    gateway_fingerprint: Option<&'a str>,
}

/// A slice's card, rendered, or kept from a render of exactly the same values.
fn card(state: &State, values: &CardValues) -> Result<std::sync::Arc<str>, WebError> {
    Ok(state
        .pieces
        .render(&state.templates, "slice_card.html", values.slice.id, values)?)
}

/// The card's changing parts of one of the viewer's slices (or any, for staff), as JSON.
async fn status_of(
    state: &State,
    user: crate::ops::accounts::User,
    id: i64,
) -> Result<serde_json::Value, WebError> {
    let site = state.ctx.site();
    let v = state
        .read_now(move |c| {
            let s = slices::get(c, id)?.filter(|s| s.user_id == user.id || user.role.is_staff());
            let s = s.ok_or(Error::NotFound("slice"))?;
            let mut facts = Facts::for_slice(c, &s)?;
            view(c, &site, &user.username, s, &mut facts)
        })
        .await?;
    Ok(serde_json::json!({
        "state": v.state, "step": v.step, "failure": v.failure,
        "ip": v.ip, "node": v.node, "place": v.place, "busy": v.busy, "progress": v.progress,
        "pending": v.pending,
        "events": v.events.iter().map(|e| serde_json::json!({"at": e.at, "text": crate::web::page::format_time(e.at), "message": e.message})).collect::<Vec<_>>(),
    }))
}

/// The state of one of the viewer's slices, as JSON (where a browser cannot listen).
#[get("/slices/{id}/status")]
async fn status(
    state: State,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let v = status_of(&state, session.user.clone(), id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(v))
}

/// How long one live stream lasts before the browser is asked to open another (so none
/// outlives a restart or a log-out by long), and how often a quiet one says it is alive.
const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(300);
const LIVE_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// Changes closer together than this are sent as one.
const LIVE_COALESCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The slice's card as server-sent events: its state now, then again each time a commit
/// changes it (approval, placement, each step of the job), until nothing is in flight. The
/// dashboard listens from the moment a request is sent, so approval shows at once.
#[get("/slices/{id}/live")]
async fn live(
    state: State,
    LoggedIn(_, session): LoggedIn,
    id: web::Path<i64>,
) -> Result<HttpResponse, WebError> {
    let (id, user) = (id.into_inner(), session.user.clone());
    // The first read also decides whether the viewer may see it at all.
    let first = status_of(&state, user.clone(), id).await?;
    let changes = state.ctx.db.slice_changes();
    struct Live {
        state: State,
        user: crate::ops::accounts::User,
        id: i64,
        changes: tokio::sync::watch::Receiver<u64>,
        last: Option<serde_json::Value>,
        next: Option<serde_json::Value>,
        until: tokio::time::Instant,
        done: bool,
    }
    fn event(v: &serde_json::Value) -> web::Bytes {
        web::Bytes::from(format!("data: {v}\n\n"))
    }
    let live = Live {
        state,
        user,
        id,
        changes,
        last: None,
        next: Some(first),
        until: tokio::time::Instant::now() + LIVE_FOR,
        done: false,
    };
    let stream = futures_util::stream::unfold(live, |mut l| async move {
        loop {
            if l.done {
                return None;
            }
            if let Some(v) = l.next.take() {
                if l.last.as_ref() != Some(&v) {
                    // Nothing in flight: this is the last word, and the browser stops listening.
                    l.done = v["busy"] == serde_json::Value::Bool(false);
                    let out = event(&v);
                    l.last = Some(v);
                    return Some((Ok::<_, std::convert::Infallible>(out), l));
                }
            }
            let now = tokio::time::Instant::now();
            if now >= l.until {
                l.done = true;
                return Some((Ok(web::Bytes::from_static(b"retry: 1000\n\n")), l));
            }
            let wait = LIVE_KEEPALIVE.min(l.until - now);
            match tokio::time::timeout(wait, l.changes.changed()).await {
                Ok(Ok(())) => {
                    tokio::time::sleep(LIVE_COALESCE).await;
                    l.changes.borrow_and_update();
                    match status_of(&l.state, l.user.clone(), l.id).await {
                        Ok(v) => l.next = Some(v),
                        // Gone (destroyed and purged) or the store failing: the stream ends
                        // and the browser falls back to asking.
                        Err(_) => return None,
                    }
                }
                Ok(Err(_)) => return None,
                Err(_) => return Some((Ok(web::Bytes::from_static(b": alive\n\n")), l)),
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

async fn request_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    form: &RequestForm,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let user_id = viewer.user().map(|u| u.id).unwrap_or(0);
    let course = form.course.clone();
    let (templates, plans, quota, have, courses) = state
        .run(move |db| {
            db.read(|c| {
                let quota = crate::ops::quotas::for_user(c, user_id, &course)?;
                // Only the plans the quota allows are offered.
                let plans: Vec<_> = slices::plan_choices(c)?
                    .into_iter()
                    .filter(|p| {
                        quota
                            .plans
                            .as_ref()
                            .is_none_or(|allowed| allowed.contains(&p.id))
                    })
                    .collect();
                let have = crate::ops::quotas::live_slices(c, user_id, None, false)?;
                let courses: Vec<_> = crate::records::courses::open(c, crate::store::now())?
                    .into_iter()
                    .map(|c| {
                        serde_json::json!({
                            "code": c.code, "title": c.title,
                            "last_day": crate::ops::term::last_day(c.ends_at),
                        })
                    })
                    .collect();
                Ok::<_, Error>((slices::template_choices(c)?, plans, quota, have, courses))
            })
        })
        .await?;
    let mut page = Page::new("request.html")
        .with("templates", &templates)
        .with("plans", &plans)
        .with("quota", &quota)
        .with("have", &have)
        .with("courses", &courses)
        .with(
            "base_name",
            &viewer
                .user()
                .map(|u| u.username.replace('_', "-"))
                .unwrap_or_default(),
        )
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct RequestForm {
    #[serde(default)]
    template: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    course: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    name: String,
}

#[get("/request")]
async fn request_form(
    state: State,
    req: HttpRequest,
    LoggedIn(viewer, _): LoggedIn,
) -> Result<HttpResponse, WebError> {
    request_page(&state, &req, &viewer, &RequestForm::default(), None).await
}

#[post("/request")]
async fn request(
    state: State,
    req: HttpRequest,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<RequestForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let f = form.clone();
    let user = session.user.clone();
    let result = state
        .run(move |db| {
            let template = crate::domain::TemplateName::parse(&f.template).map_err(|_| {
                crate::domain::FieldError::new("template", "Choose one of the offered templates.")
            })?;
            let plan_id = if f.plan.is_empty() {
                None
            } else {
                Some(f.plan.parse::<i64>().map_err(|_| {
                    crate::domain::FieldError::new("plan", "Choose one of the offered plans.")
                })?)
            };
            db.write(|tx| {
                slices::request(
                    tx,
                    &user,
                    &slices::Request {
                        template,
                        plan_id,
                        course: f.course,
                        purpose: f.purpose,
                        name: f.name,
                    },
                )
            })
        })
        .await;
    match result {
        Ok(_) => Ok(see_other(
            &state,
            "/",
            Some("Your request is in. The lab staff will look at it; you will get a mail."),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            request_page(&state, &req, &viewer, &form, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct DestroyForm {
    #[serde(default)]
    confirm: String,
}

/// start, stop, restart, destroy: the owner or staff; withdraw: the owner.
#[post("/slices/{id}/{action}")]
async fn act(
    state: State,
    LoggedIn(_, session): LoggedIn,
    path: web::Path<(i64, String)>,
    posted: Posted<DestroyForm>,
) -> Result<HttpResponse, WebError> {
    let (id, action) = path.into_inner();
    let kind = match action.as_str() {
        "start" => JobKind::Start,
        "stop" => JobKind::Stop,
        "restart" => JobKind::Restart,
        "destroy" => JobKind::Destroy,
        "withdraw" => return withdraw(state, session.user.clone(), id, posted).await,
        _ => return Err(WebError::NotFound),
    };
    let user = session.user.clone();
    let ip = posted.viewer.ip.clone();
    let confirm = posted.form.confirm.trim().to_string();
    // Back to where the action was asked from: the owner's dashboard, or the staff page.
    let (uid, staff) = (user.id, user.role.is_staff());
    let owner = state
        .read(move |c| slices::get(c, id))
        .await?
        .filter(|s| s.user_id == uid || staff)
        .ok_or(WebError::NotFound)?
        .user_id;
    let back = if owner == uid {
        "/".to_string()
    } else {
        format!("/staff/slices/{id}")
    };
    let result = state
        .run(move |db| {
            db.write(|tx| {
                if kind == JobKind::Destroy {
                    let s = slices::get(tx, id)?.ok_or(Error::NotFound("slice"))?;
                    if confirm != s.hostname {
                        return Err(crate::domain::FieldError::new(
                            "confirm",
                            format!("Type the slice's name, {}, to destroy it.", s.hostname),
                        )
                        .into());
                    }
                }
                slices::act(tx, &user, id, kind, &ip)
            })
        })
        .await;
    done_or_refused(&state, &back, result, |s| {
        format!("{} of {} is under way.", kind.noun(), s.hostname)
    })
}

/// The owner withdraws a waiting request, or puts a denied one away.
async fn withdraw(
    state: State,
    user: crate::ops::accounts::User,
    id: i64,
    posted: Posted<DestroyForm>,
) -> Result<HttpResponse, WebError> {
    let ip = posted.viewer.ip.clone();
    let result = state
        .run(move |db| db.write(|tx| slices::withdraw(tx, &user, id, &ip)))
        .await;
    done_or_refused(&state, "/", result, |s| {
        if s.failure.is_empty() {
            format!("The request for {} is withdrawn.", s.hostname)
        } else {
            format!("The denied request for {} is put away.", s.hostname)
        }
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home)
        .service(status)
        .service(live)
        .service(request_form)
        .service(request)
        .service(act);
}
