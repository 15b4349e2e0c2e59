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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(courses_list).service(put_course);
}
