//! Courses and terms (`/staff/courses`).

use crate::error::Error;
use crate::ops::term::{self, CourseInput};
use crate::web::error::WebError;
use crate::web::extract::form::Posted;
use crate::web::extract::session::{StaffOnly, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default, Clone)]
pub struct CourseForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    last_day: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    staff: String,
    #[serde(default)]
    max_slices: String,
}

async fn courses_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    form: &CourseForm,
    editing: bool,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let (courses, plans) = state
        .read(|c| {
            Ok::<_, Error>((
                term::courses(c, crate::store::now())?,
                crate::ops::slices::plan_choices(c)?,
            ))
        })
        .await?;
    let mut page = Page::new("staff/courses.html")
        .with("courses", &courses)
        .with("plans", &plans)
        .with("grace_days", &state.ctx.site().grace_days)
        .with("editing", &editing)
        .with("form", form);
    if let Some(e) = err {
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

#[derive(Deserialize)]
pub struct EditQuery {
    #[serde(default)]
    edit: String,
}

#[get("/courses")]
async fn courses_list(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    q: web::Query<EditQuery>,
) -> Result<HttpResponse, WebError> {
    let code = q.into_inner().edit;
    let form = if code.is_empty() {
        None
    } else {
        state
            .read(move |c| {
                let Some(course) = crate::records::courses::get(c, &code)? else {
                    return Ok::<_, Error>(None);
                };
                let staff = crate::records::courses::staff(c, &course.code)?;
                let max = crate::ops::quotas::rules(c)?
                    .into_iter()
                    .find(|r| r.scope == "course" && r.course == course.code)
                    .map(|r| r.max_slices.to_string());
                Ok(Some(CourseForm {
                    last_day: term::last_day(course.ends_at),
                    plan: course.plan_id.map(|p| p.to_string()).unwrap_or_default(),
                    staff: staff.join(", "),
                    max_slices: max.unwrap_or_default(),
                    code: course.code,
                    title: course.title,
                }))
            })
            .await?
    };
    let editing = form.is_some();
    courses_page(
        &state,
        &req,
        &viewer,
        &form.unwrap_or_default(),
        editing,
        None,
    )
    .await
}

#[post("/courses")]
async fn put_course(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    posted: Posted<CourseForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let plan_id = match form.plan.trim() {
        "" => Ok(None),
        p => p.parse::<i64>().map(Some).map_err(|_| {
            Error::Invalid(vec![crate::domain::FieldError::new(
                "plan",
                "Choose one of the plans.",
            )])
        }),
    };
    let input = CourseInput {
        code: form.code.clone(),
        title: form.title.clone(),
        last_day: form.last_day.clone(),
        plan_id: plan_id.as_ref().ok().copied().flatten(),
        staff: form.staff.clone(),
        max_slices: form.max_slices.clone(),
    };
    let (user, ip) = (session.user.clone(), viewer.ip.clone());
    let exists = {
        let code = form.code.clone();
        state
            .read(move |c| crate::records::courses::get(c, code.trim()))
            .await?
            .is_some()
    };
    let result = match plan_id {
        Err(e) => Err(e),
        Ok(_) => {
            state
                .run(move |db| {
                    db.write(|tx| term::put_course(tx, &user, &input, crate::store::now(), &ip))
                })
                .await
        }
    };
    match result {
        Ok(code) => Ok(see_other(
            &state,
            "/staff/courses",
            Some(&if exists {
                format!("{code} saved: its slices end with it.")
            } else {
                format!("{code} added: students can name it on requests now.")
            }),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            courses_page(&state, &req, &viewer, &form, exists, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize, Default)]
pub struct RosterForm {
    #[serde(default)]
    csv: String,
}

/// Where each person on the roster stands, counted.
#[derive(Serialize, Default)]
struct RosterCounts {
    listed: usize,
    accounts: usize,
    slices: usize,
    not_started: usize,
    not_invited: usize,
}

async fn roster_page(
    state: &State,
    req: &HttpRequest,
    viewer: &Viewer,
    code: String,
    typed: &str,
    err: Option<&Error>,
) -> Result<HttpResponse, WebError> {
    let (course, rows) = state
        .read(move |c| {
            let course =
                crate::records::courses::get(c, &code)?.ok_or(Error::NotFound("course"))?;
            let rows = crate::records::rosters::for_course(c, &course.code)?;
            Ok::<_, Error>((course, rows))
        })
        .await?;
    let counts = RosterCounts {
        listed: rows.len(),
        accounts: rows.iter().filter(|r| r.account.is_some()).count(),
        slices: rows.iter().filter(|r| r.slice_state.is_some()).count(),
        not_started: rows.iter().filter(|r| r.account.is_none()).count(),
        not_invited: rows.iter().filter(|r| r.invited_at.is_none()).count(),
    };
    let mut page = Page::new("staff/roster.html")
        .with("course", &course)
        .with("rows", &rows)
        .with("counts", &counts)
        .with("typed", &typed)
        .with("signup", &signup_here(state));
    if let Some(e) = err {
        if let Error::Invalid(list) = e {
            let lines: Vec<&str> = list
                .iter()
                .filter(|f| f.field == "csv")
                .flat_map(|f| f.message.lines())
                .collect();
            page = page.with("csv_problems", &lines);
        }
        page = page.errors(e);
    }
    page.render(state, req, viewer)
}

/// Whether people on a roster make their account here (else they log in with the college's).
fn signup_here(state: &State) -> bool {
    state.ctx.directory.is_none()
        && state.ctx.sso.is_none()
        && !state.ctx.policy.local_logins_admins_only
}

/// A course's roster: who is on it, who has an account, who has a slice.
#[get("/courses/{code}/roster")]
async fn roster(
    state: State,
    req: HttpRequest,
    StaffOnly(viewer, _): StaffOnly,
    code: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    roster_page(&state, &req, &viewer, code.into_inner(), "", None).await
}

/// Puts the pasted students on the roster and invites them; a paste with any bad line is
/// refused whole, every bad line named, the text kept.
#[post("/courses/{code}/roster")]
async fn add_to_roster(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    code: web::Path<String>,
    posted: Posted<RosterForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let code = code.into_inner();
    let (user, ip, c, text) = (
        session.user.clone(),
        viewer.ip.clone(),
        code.clone(),
        form.csv.clone(),
    );
    let signup = signup_here(&state);
    let result = state
        .run(move |db| {
            db.write(|tx| {
                let course =
                    crate::records::courses::get(tx, &c)?.ok_or(Error::NotFound("course"))?;
                let entries = crate::ops::rosters::parse(&text, &course.code)
                    .map_err(crate::ops::rosters::problems_error)?;
                crate::ops::rosters::import(tx, &user, &course.code, &entries, signup, &ip)
            })
        })
        .await;
    match result {
        Ok(done) => Ok(see_other(
            &state,
            &format!(
                "/staff/courses/{}/roster",
                crate::web::extract::session::url_escape(&code)
            ),
            Some(&format!(
                "{} added to the roster ({} already on it); {} invited by mail.",
                done.added, done.already, done.invited
            )),
        )),
        Err(e @ (Error::Invalid(_) | Error::Forbidden(_))) => {
            roster_page(&state, &req, &viewer, code, &form.csv, Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    entry: String,
}

/// Takes someone off the roster (their slices stay; later requests wait for approval).
#[post("/courses/{code}/roster/remove")]
async fn remove_from_roster(
    state: State,
    req: HttpRequest,
    StaffOnly(_, session): StaffOnly,
    code: web::Path<String>,
    posted: Posted<RemoveForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let code = code.into_inner();
    let (user, ip, c, entry) = (
        session.user.clone(),
        viewer.ip.clone(),
        code.clone(),
        form.entry.clone(),
    );
    let result = state
        .run(move |db| db.write(|tx| crate::ops::rosters::remove(tx, &user, &c, &entry, &ip)))
        .await;
    match result {
        Ok(()) => Ok(see_other(
            &state,
            &format!(
                "/staff/courses/{}/roster",
                crate::web::extract::session::url_escape(&code)
            ),
            Some(&format!(
                "{} is off the roster of {code}: their next request waits for approval.",
                form.entry
            )),
        )),
        Err(e @ (Error::NotFound(_) | Error::Forbidden(_))) => {
            roster_page(&state, &req, &viewer, code, "", Some(&e)).await
        }
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(courses_list)
        .service(put_course)
        .service(roster)
        .service(add_to_roster)
        .service(remove_from_roster);
}
