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
        .with(
            "sso",
            &state.ctx.sso.as_ref().map(|s| s.label().to_string()),
        )
        .with(
            "passwords",
            &(state.ctx.directory.is_some() || !state.ctx.policy.local_logins_admins_only),
        )
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

#[derive(Deserialize)]
pub struct SignUpQuery {
    /// The address to fill in (a roster's invitation links it).
    email: Option<String>,
}

#[get("/signup")]
async fn signup_page(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    q: web::Query<SignUpQuery>,
) -> Result<HttpResponse, WebError> {
    if viewer.session.is_some() {
        return Ok(see_other(&state, "/", None));
    }
    if let Some(to_login) = no_signup(&state) {
        return Ok(to_login);
    }
    let form = SignUpForm {
        email: q
            .into_inner()
            .email
            .filter(|e| crate::domain::Email::parse(e).is_ok())
            .unwrap_or_default(),
        ..SignUpForm::default()
    };
    Page::new("signup.html")
        .with("form", &form)
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
        .service(setup)
        .service(sso_start)
        .service(sso_callback);
}

/// The cookie that carries a single sign-on log-in to the provider and back: the state, nonce
/// and PKCE verifier of this browser's log-in, signed. (`__Host-` over HTTPS: no other site
/// under the same domain, a student's web app included, can set it.)
fn sso_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-slices_sso"
    } else {
        "slices_sso"
    }
}

/// What the browser carries to the provider and back, in the signed cookie.
#[derive(serde::Serialize, Deserialize)]
struct SsoTrip {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    at: i64,
}

fn sso_mac(state: &State, body: &str) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&state.ctx.secret).expect("HMAC takes any key");
    mac.update(b"single sign-on trip\n");
    mac.update(body.as_bytes());
    mac
}

fn seal(state: &State, trip: &SsoTrip) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = b64.encode(serde_json::to_vec(trip).expect("a trip serializes"));
    let tag = b64.encode(sso_mac(state, &body).finalize().into_bytes());
    format!("{body}.{tag}")
}

fn unseal(state: &State, raw: &str) -> Option<SsoTrip> {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, tag) = raw.split_once('.')?;
    sso_mac(state, body)
        .verify_slice(&b64.decode(tag).ok()?)
        .ok()?;
    serde_json::from_slice(&b64.decode(body).ok()?).ok()
}

/// This master's callback address, as registered at the provider.
fn sso_callback_url(state: &State) -> String {
    format!("{}/login/sso/callback", state.ctx.base_url())
}

/// "Log in with ...": sends the browser to the institution's provider.
#[get("/login/sso")]
async fn sso_start(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, WebError> {
    let Some(sso) = state.ctx.sso.clone() else {
        return Err(WebError::NotFound);
    };
    let next = safe_next(q.next.as_deref());
    if viewer.session.is_some() {
        return Ok(see_other(&state, &next, None));
    }
    match sso.begin(&sso_callback_url(&state)).await {
        Ok(started) => {
            let trip = SsoTrip {
                state: started.state,
                nonce: started.nonce,
                verifier: started.verifier,
                next,
                at: crate::store::now(),
            };
            let mut resp = HttpResponse::SeeOther();
            resp.insert_header((actix_web::http::header::LOCATION, started.url));
            resp.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
            resp.cookie(cookie(
                &state,
                sso_cookie_name(state.https),
                seal(&state, &trip),
                accounts::sessions::SSO_STATE_SECS,
            ));
            Ok(resp.finish())
        }
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on");
            login_form(&state)
                .with("next", &next)
                .errors(&Error::Throttled(format!(
                    "{} does not answer right now. Try again in a few minutes.",
                    sso.label()
                )))
                .status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE)
                .render(&state, &req, &viewer)
        }
    }
}

/// What the provider sends the browser back with.
#[derive(Deserialize)]
pub struct SsoAnswer {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The provider's answer: checked against this browser's trip, the code exchanged, the ID token
/// checked, then the account found or made and a session opened. Every refusal is audited and
/// said on the log-in page; the trip's cookie is gone either way.
#[get("/login/sso/callback")]
async fn sso_callback(
    state: State,
    req: HttpRequest,
    viewer: Viewer,
    q: web::Query<SsoAnswer>,
) -> Result<HttpResponse, WebError> {
    let Some(sso) = state.ctx.sso.clone() else {
        return Err(WebError::NotFound);
    };
    let q = q.into_inner();
    let trip = req
        .cookie(sso_cookie_name(state.https))
        .and_then(|c| unseal(&state, c.value()));
    let next = trip
        .as_ref()
        .map_or_else(|| "/".to_string(), |t| t.next.clone());
    let origin = viewer.origin();
    let result = sso_finish(&state, &sso, trip, q, &origin).await;
    let mut resp = match result {
        Ok((user, token)) => session_response(
            &state,
            &next,
            token,
            &format!("Welcome, {}.", user.display_name),
        ),
        Err((why, said)) => {
            if let Some(why) = why {
                let o = origin.clone();
                state
                    .run(move |db| accounts::sso_refused(db, &o, &why))
                    .await?;
            }
            let mut page = login_form(&state).with("next", &next).errors(&said);
            if matches!(said, Error::Throttled(_)) {
                // The provider does not answer: not the person's doing.
                page = page.status(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
            }
            page.render(&state, &req, &viewer)?
        }
    };
    let _ = resp.add_cookie(&cookie(
        &state,
        sso_cookie_name(state.https),
        String::new(),
        0,
    ));
    Ok(resp)
}

/// The checks of [`sso_callback`], in order: `Err((what the audit is to say, unless said
/// already; what the person is told))` at the first that fails.
async fn sso_finish(
    state: &State,
    sso: &accounts::SingleSignOn,
    trip: Option<SsoTrip>,
    q: SsoAnswer,
    origin: &accounts::Origin,
) -> Result<(accounts::User, String), (Option<String>, Error)> {
    use accounts::sso::{Answer, SsoError};
    let again = |m: &str| {
        Error::Forbidden(format!(
            "{m} Start again with \"Log in with {}\".",
            sso.label()
        ))
    };
    let Some(trip) = trip else {
        return Err((
            Some("single sign-on: no log-in was started in this browser".into()),
            again("This log-in was not started in this browser, or it took too long."),
        ));
    };
    if crate::store::now() - trip.at > accounts::sessions::SSO_STATE_SECS {
        return Err((
            Some("single sign-on: too late".into()),
            again("This log-in took too long."),
        ));
    }
    if let Some(error) = q.error {
        let error: String = error
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let detail: String = q
            .error_description
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        return Err((
            Some(format!("single sign-on: the provider said {error}")),
            again(&format!(
                "{} did not log you in ({error}{}{detail}).",
                sso.label(),
                if detail.is_empty() { "" } else { ": " }
            )),
        ));
    }
    let sent = q.state.unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        sent.as_bytes(),
        trip.state.as_bytes(),
    )) {
        return Err((
            Some("single sign-on: the state does not match this browser's log-in".into()),
            again("This answer is not for the log-in this browser started."),
        ));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err((
            Some("single sign-on: no code".into()),
            again("The answer has no code in it."),
        ));
    };
    let state_hash = crate::domain::token::token_hash(&trip.state);
    let fresh = state
        .run(move |db| db.write(|tx| accounts::sessions::take_sso_state(tx, &state_hash)))
        .await
        .map_err(|e| (None, e))?;
    if !fresh {
        return Err((
            Some("single sign-on: the answer was used before (replayed)".into()),
            again("This answer has been used already."),
        ));
    }
    let answer = Answer { code, iss: q.iss };
    let person = sso
        .finish(
            &sso_callback_url(state),
            &answer,
            &trip.nonce,
            &trip.verifier,
        )
        .await
        .map_err(|e| {
            let said = match &e {
                SsoError::Unreachable(_) => Error::Throttled(format!(
                    "{} does not answer right now. Try again in a few minutes.",
                    sso.label()
                )),
                SsoError::Refused(_) | SsoError::Forged(_) => {
                    again(&format!("{} did not vouch for this log-in.", sso.label()))
                }
                SsoError::Unusable(m) => Error::Forbidden(m.clone()),
            };
            tracing::warn!(error = %e, "single sign-on");
            (Some(format!("single sign-on: {e}")), said)
        })?;
    let (policy, o) = (state.ctx.policy, origin.clone());
    state
        .run(move |db| accounts::sso_login(db, &policy, person, &o))
        .await
        // Audited there.
        .map_err(|e| (None, e))
}
