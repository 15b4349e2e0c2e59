//! Log-in, sign-up, log-out and the first admin's set-up page (`/login`, `/signup`,
//! `/logout`, `/setup/TOKEN`).

use crate::domain::Role;
use crate::error::Error;
use crate::ops::accounts::{self, invites, Event, Grant, SignUpForm};
use crate::web::error::WebError;
use crate::web::extract::form::{NoFields, Posted};
use crate::web::extract::session::{cookie, safe_next, session_cookie_name, LoggedIn, Viewer};
use crate::web::page::{see_other, Page};
use crate::web::State;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;

fn session_response(state: &State, to: &str, token: String, notice: &str) -> HttpResponse {
    let mut resp = see_other(state, to, Some(notice));
    let max_age = state.ctx.policy.life.absolute_secs;
    let _ = resp.add_cookie(&cookie(
        state,
        session_cookie_name(state.https),
        token,
        max_age,
    ));
    resp
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[get("/login")]
async fn login_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, WebError> {
    let next = safe_next(q.next.as_deref());
    if viewer.session.is_some() {
        return Ok(see_other(&state, &next, None));
    }
    login_form(&state)
        .with("next", &next)
        .render(&state, &req, &viewer)
}

/// The log-in page, saying how this lab logs people in.
fn login_form(state: &State) -> Page {
    Page::new("login.html")
        .with("directory", &state.ctx.directory.is_some())
        .with("signup", &!state.ctx.policy.local_logins_admins_only)
}

/// With `local_logins = "admins"` nobody makes an account here: the directory has them all.
fn no_signup(state: &State) -> Option<HttpResponse> {
    state.ctx.policy.local_logins_admins_only.then(|| {
        see_other(
            state,
            "/login",
            Some(
                "There is no account to make here: log in with your college username and password.",
            ),
        )
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

#[post("/login")]
async fn login(
    state: State,
    req: HttpRequest,
    posted: Posted<LoginForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let next = safe_next(form.next.as_deref());
    let origin = viewer.origin();
    let (login, password) = (form.login.clone(), form.password);
    let s = state.clone();
    let result = state
        .run(move |db| {
            let directory = s.ctx.directory.as_ref();
            accounts::login(db, &s.ctx.policy, directory, &login, &password, &origin)
        })
        .await;
    match result {
        Ok((user, token)) => Ok(session_response(
            &state,
            &next,
            token,
            &format!("Welcome back, {}.", user.display_name),
        )),
        Err(e @ (Error::Invalid(_) | Error::Throttled(_) | Error::Forbidden(_))) => {
            login_form(&state)
                .with("next", &next)
                .with("login", &form.login)
                .errors(&e)
                .render(&state, &req, &viewer)
        }
        Err(e) => Err(e.into()),
    }
}

#[post("/logout")]
async fn logout(
    state: State,
    LoggedIn(_, session): LoggedIn,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, WebError> {
    let ip = posted.viewer.ip.clone();
    state
        .run(move |db| accounts::logout(db, &session, &ip))
        .await?;
    let mut resp = see_other(&state, "/", Some("You are logged out."));
    let _ = resp.add_cookie(&cookie(
        &state,
        session_cookie_name(state.https),
        String::new(),
        0,
    ));
    Ok(resp)
}

#[get("/signup")]
async fn signup_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
) -> Result<HttpResponse, WebError> {
    if viewer.session.is_some() {
        return Ok(see_other(&state, "/", None));
    }
    if let Some(to_login) = no_signup(&state) {
        return Ok(to_login);
    }
    Page::new("signup.html")
        .with("form", &SignUpForm::default())
        .render(&state, &req, &viewer)
}

#[post("/signup")]
async fn signup(
    state: State,
    req: HttpRequest,
    posted: Posted<SignUpForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    if let Some(to_login) = no_signup(&state) {
        return Ok(to_login);
    }
    let origin = viewer.origin();
    let s = state.clone();
    let f = form.clone();
    let result = state
        .run(move |db| {
            let account = f.check()?;
            accounts::create_account(
                db,
                &s.ctx.policy,
                account,
                Grant {
                    role: Role::Student,
                    event: Event::SignUp,
                    creator: None,
                    origin: Some(&origin),
                    invite: None,
                },
            )
        })
        .await;
    match result {
        Ok((user, Some(token))) => Ok(session_response(
            &state,
            "/",
            token,
            &format!(
                "Welcome, {}. Your account is ready; we mailed {} a link to confirm the address.",
                user.display_name, user.email
            ),
        )),
        Ok((_, None)) => Err(WebError::Internal(anyhow::anyhow!(
            "sign-up made no session"
        ))),
        Err(e @ Error::Invalid(_)) => {
            let mut page = Page::new("signup.html").with("form", &form);
            // The passwords were fine and something else was not: she need not type them again.
            if !e.concerns(&["password", "password_confirm"]) {
                page = page.with("kept_password", &form.password);
            }
            page.errors(&e).render(&state, &req, &viewer)
        }
        Err(e) => Err(e.into()),
    }
}

/// The invite's role, or the page that says the link is no good.
async fn invite_role(state: &State, token: String) -> Result<Role, WebError> {
    state
        .read(move |c| invites::peek(c, &token))
        .await?
        .ok_or_else(|| {
            WebError::Forbidden(
                "This link has been used or has expired. On the server, `slices user add` \
                 creates an account, and restarting `slices serve` prints a new first-admin \
                 link while there is no admin."
                    .into(),
            )
        })
}

#[get("/setup/{token}")]
async fn setup_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    token: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let token = token.into_inner();
    let role = invite_role(&state, token.clone()).await?;
    Page::new("setup.html")
        .with("role", &role)
        .with("token", &token)
        .with("form", &SignUpForm::default())
        .render(&state, &req, &viewer)
}

#[post("/setup/{token}")]
async fn setup(
    state: State,
    req: HttpRequest,
    token: web::Path<String>,
    posted: Posted<SignUpForm>,
) -> Result<HttpResponse, WebError> {
    let Posted { viewer, form } = posted;
    let token = token.into_inner();
    let role = invite_role(&state, token.clone()).await?;
    let origin = viewer.origin();
    let s = state.clone();
    let f = form.clone();
    let t = token.clone();
    let result = state
        .run(move |db| {
            let account = f.check()?;
            accounts::create_account(
                db,
                &s.ctx.policy,
                account,
                Grant {
                    role,
                    event: Event::AccountCreated,
                    creator: None,
                    origin: Some(&origin),
                    invite: Some(&t),
                },
            )
        })
        .await;
    match result {
        Ok((user, Some(session))) => Ok(session_response(
            &state,
            "/",
            session,
            &format!("Your {} account {} is ready.", role, user.username),
        )),
        Ok((_, None)) => Err(WebError::Internal(anyhow::anyhow!(
            "set-up made no session"
        ))),
        Err(e @ Error::Invalid(_)) => Page::new("setup.html")
            .with("role", &role)
            .with("token", &token)
            .with("form", &form)
            .errors(&e)
            .render(&state, &req, &viewer),
        Err(e) => Err(e.into()),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(login_page)
        .service(login)
        .service(logout)
        .service(signup_page)
        .service(signup)
        .service(setup_page)
        .service(setup);
}
