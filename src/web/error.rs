//! The one web error: a status and a short page with a sentence for the user. Causes go to
//! the log with a reference the user can quote.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("the form is stale or did not come from this site")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooMany(String),
    #[error("request body too large")]
    TooLarge,
    /// Too much of this work in hand (password checks): nothing was done; try again soon.
    #[error("{0}")]
    Busy(String),
    /// The server cannot save right now (its disk is full): nothing was changed.
    #[error("cannot save right now")]
    Unavailable,
    /// Not logged in: go to the log-in page, then back to this path.
    #[error("log in first")]
    LoginFirst(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) => WebError::BadRequest(e.to_string()),
            Error::NotFound(_) => WebError::NotFound,
            Error::Forbidden(m) => WebError::Forbidden(m),
            Error::Throttled(m) => WebError::TooMany(m),
            Error::Busy(m) => WebError::Busy(m),
            Error::Store(s) if s.is_storage() => {
                tracing::error!(error = %s, "cannot write the database");
                WebError::Unavailable
            }
            Error::Store(s) => WebError::Internal(s.into()),
            Error::Internal(e) => WebError::Internal(e),
        }
    }
}

impl From<tera::Error> for WebError {
    fn from(e: tera::Error) -> Self {
        WebError::Internal(e.into())
    }
}

pub fn escape(s: &str) -> String {
    tera::escape_html(s)
}

/// A self-contained page (it must render even when templates fail).
pub fn simple_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Slices</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><header class=\"top\"><a class=\"brand\" href=\"/\">Slices</a></header>\
         <main class=\"narrow\"><h1>{title}</h1><p>{message}</p>\
         <p><a href=\"/\">Back to the start page</a></p></main></body></html>",
        title = escape(title),
        message = escape(message),
    );
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unavailable | WebError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::LoginFirst(_) => StatusCode::SEE_OTHER,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            WebError::NotFound => simple_page(
                status,
                "Not found",
                "There is nothing here, or you may not see it.",
            ),
            WebError::Forbidden(m) => simple_page(status, "Not allowed", m),
            WebError::Csrf => simple_page(
                status,
                "This form has expired",
                "The form was stale or did not come from this site, so nothing was changed. \
                 Go back, reload the page and try again.",
            ),
            WebError::BadRequest(m) => simple_page(status, "That did not work", m),
            WebError::TooMany(m) => simple_page(status, "Slow down", m),
            WebError::TooLarge => simple_page(
                status,
                "Too much at once",
                "What was sent is larger than this site accepts, so nothing was changed.",
            ),
            WebError::Busy(m) => {
                let mut page = simple_page(status, "Busy right now", m);
                page.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                page
            }
            WebError::Unavailable => {
                let mut page = simple_page(
                    status,
                    "The server cannot save right now",
                    "Its storage is full or cannot be written, so what you asked was not done. \
                     Nothing was lost or half-saved: everything saved before is kept. Try again \
                     in a few minutes; the lab staff are being told.",
                );
                page.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("120"));
                page
            }
            WebError::LoginFirst(next) => HttpResponse::SeeOther()
                .insert_header((
                    header::LOCATION,
                    crate::web::extract::session::login_url(next),
                ))
                .finish(),
            WebError::Internal(e) => {
                // The request's id: the same one its log lines and X-Request-Id carry.
                let reference = crate::web::trace::current()
                    .unwrap_or_else(crate::web::trace::next_id)
                    .to_string();
                tracing::error!(reference, error = format!("{e:#}"), "internal error");
                simple_page(
                    status,
                    "Something went wrong on our side",
                    &format!(
                        "Nothing you did caused this. Try again in a moment; if it keeps \
                         happening, tell the lab staff this reference: {reference}."
                    ),
                )
            }
        }
    }
}
