//! The web interface: sign-up, log-in, accounts and the staff pages, served by actix-web from
//! templates and a stylesheet compiled into the binary.

mod chart;
pub mod error;
pub mod extract;
pub mod page;
mod pieces;
mod public;
mod slice_web;
mod staff;
mod student;
pub mod tls;
mod trace;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, Service};
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::FutureExt;
use tera::Tera;
use tracing::Instrument;

use crate::context::Context;
use error::WebError;

/// What every handler can reach.
pub struct AppState {
    pub ctx: Arc<Context>,
    pub templates: Tera,
    pub https: bool,
    pub base_url: String,
    /// The master's OS templates (hashes cached by size and time).
    pub os_templates: crate::templates::TemplateDir,
    /// Connections to the agents for downloads (archives of /home), made at the first one.
    agents: std::sync::OnceLock<Arc<crate::jobs::links::Links>>,
    /// Pieces of pages already rendered: dashboard cards, list rows (about 2 MB at most).
    pub pieces: pieces::Pieces,
}

pub type State = web::Data<AppState>;

impl AppState {
    /// The master's links to the agents (its client certificate from the CA folder).
    pub fn agents(&self) -> anyhow::Result<Arc<crate::jobs::links::Links>> {
        if let Some(l) = self.agents.get() {
            return Ok(l.clone());
        }
        let ca = crate::slave_link::pki::Ca::open_or_create(&self.ctx.config.data.join("ca"))?;
        let links = Arc::new(crate::jobs::links::Links::new(
            self.ctx.db.clone(),
            ca.client_config()?,
            std::time::Duration::from_secs(self.ctx.config.agent_timeout_secs.max(1)),
        ));
        Ok(self.agents.get_or_init(|| links).clone())
    }

    /// Runs `f` on a read-only connection, off the async threads.
    pub async fn read<T, F>(&self, f: F) -> crate::error::Result<T>
    where
        F: FnOnce(&rusqlite::Connection) -> crate::error::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.run(move |db| db.read(f)).await
    }

    /// Runs a short, bounded read (an indexed lookup, a page of a list) on this thread when a
    /// reader connection is free, else as [`AppState::read`] does: the hand-over to the
    /// blocking pool and back costs more than such a read.
    pub async fn read_now<T, F>(&self, f: F) -> crate::error::Result<T>
    where
        F: FnOnce(&rusqlite::Connection) -> crate::error::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.read_now(f).await
    }

    /// Runs `f` in one write transaction, off the async threads.
    pub async fn write<T, F>(&self, f: F) -> crate::error::Result<T>
    where
        F: FnOnce(&rusqlite::Transaction) -> crate::error::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.run(move |db| db.write(f)).await
    }

    /// Runs a use case that takes the database (and makes its own transactions), off the
    /// async threads.
    pub async fn run<T, F>(&self, f: F) -> crate::error::Result<T>
    where
        F: FnOnce(&crate::store::Db) -> crate::error::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.ctx.db.run(f).await
    }
}

async fn not_found() -> Result<HttpResponse, WebError> {
    Err(WebError::NotFound)
}

fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    WebError::BadRequest(format!("The address has a value that does not fit: {err}.")).into()
}

fn path_error(_: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    WebError::NotFound.into()
}

/// The running web server.
pub struct Application {
    port: u16,
    server: Server,
    pub state: State,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the server, not yet running.
    pub fn build(ctx: Arc<Context>) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(ctx.config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", ctx.config.listen))?;
        Self::build_on(ctx, listener)
    }

    pub fn build_on(ctx: Arc<Context>, listener: TcpListener) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        let config = &ctx.config;
        let https = config.https();
        let mut listen = config.listen;
        listen.set_port(port);
        let base_url = if config.public_url.is_empty() {
            let mut c = config.clone();
            c.listen = listen;
            c.base_url()
        } else {
            config.base_url()
        };
        let _ = ctx.public_base.set(base_url.clone());
        let templates = page::load_templates(config.templates_dir.as_deref())?;
        let state = web::Data::new(AppState {
            ctx: ctx.clone(),
            templates,
            https,
            base_url,
            os_templates: crate::templates::TemplateDir::new(&config.os_templates_dir())?,
            agents: std::sync::OnceLock::new(),
            pieces: pieces::Pieces::new(2 << 20),
        });
        let max_body = config.max_body_bytes;
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.workers
        };
        let data = state.clone();
        let server = HttpServer::new(move || {
            // The master's own page headers, on every answer but a slice's (the built-in web
            // gateway's answers are the slice's own).
            let mut page_headers = vec![
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "same-origin"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ];
            if https {
                page_headers.push((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"));
            }
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap_fn(move |req, srv| {
                    let page_headers = page_headers.clone();
                    srv.call(req).map(move |res| {
                        res.map(|mut res| {
                            let proxied = res
                                .response()
                                .extensions()
                                .get::<slice_web::Proxied>()
                                .is_some();
                            if !proxied {
                                for (k, v) in page_headers {
                                    if !res.headers().contains_key(&k) {
                                        res.headers_mut()
                                            .insert(k, header::HeaderValue::from_static(v));
                                    }
                                }
                            }
                            res
                        })
                    })
                })
                .wrap_fn(|req, srv| {
                    let start = Instant::now();
                    let id = trace::next_id();
                    let span = tracing::info_span!(
                        "request",
                        id = %id,
                        method = %req.method(),
                        path = %trace::loggable_path(req.path())
                    );
                    let log = span.clone();
                    let fut = span.in_scope(|| trace::with_id(id, || srv.call(req)));
                    trace::scope(id, fut)
                        .instrument(span)
                        .map(move |mut res| {
                            let micros = start.elapsed().as_micros() as u64;
                            let _in = log.enter();
                            match &mut res {
                                Ok(r) => {
                                    r.headers_mut().insert(
                                        header::HeaderName::from_static(trace::HEADER),
                                        id.header_value(),
                                    );
                                    let status = r.status().as_u16();
                                    if r.status().is_server_error() || r.request().method() != "GET" {
                                        tracing::info!(status, micros, "request");
                                    } else {
                                        tracing::debug!(status, micros, "request");
                                    }
                                }
                                Err(e) => tracing::warn!(error = %e, micros, "request failed"),
                            }
                            res
                        })
                })
                // A request for a slice's web address (`NAME.<domain>`) is the slice's.
                .service(
                    web::scope("")
                        .guard(actix_web::guard::fn_guard(|ctx| {
                            ctx.app_data::<State>()
                                .is_some_and(|s| slice_web::for_a_slice(s, ctx.head()))
                        }))
                        .default_service(web::to(slice_web::serve)),
                )
                .configure(public::routes)
                .configure(student::routes)
                .service(web::scope("/staff").configure(staff::routes))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .shutdown_timeout(10);
        let server = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                server.listen_rustls_0_23(listener, tls::server_config(cert, key)?)?
            }
            _ => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
