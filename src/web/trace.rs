//! Every request runs inside a `request` span with an id of its own: its log lines carry it,
//! the response names it in `X-Request-Id`, and a 500 page shows it as the reference to quote.
//! The id is a number until someone needs to read it (no allocation on the way through).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;

tokio::task_local! {
    static REQUEST_ID: RequestId;
}

/// The response header that names the request's id.
pub const HEADER: &str = "x-request-id";

/// A request's id: written as 12 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl RequestId {
    fn digits(self) -> [u8; 12] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 12];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((self.0 >> (44 - 4 * i)) & 0xf) as usize];
        }
        out
    }

    /// The id as a header value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_bytes(&self.digits()).expect("hex digits are a valid header value")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.digits();
        f.write_str(std::str::from_utf8(&d).expect("hex digits"))
    }
}

/// A new request id, unique within the process and unlikely to repeat across restarts (a
/// random start, then counting).
pub fn next_id() -> RequestId {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(rand::random::<u64>);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    RequestId(start.wrapping_add(n) & 0xffff_ffff_ffff)
}

/// The pages whose address carries a secret (`/reset/TOKEN`...): the token is never logged.
const TOKEN_PAGES: [&str; 3] = ["/reset/", "/setup/", "/verify/"];

/// A request's path as it may be written to a log: a token in it is masked
/// (`/reset/[token]`), everything else kept.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for page in TOKEN_PAGES {
        if let Some(rest) = path.strip_prefix(page) {
            let tail = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
            return format!("{page}[token]{tail}").into();
        }
    }
    path.into()
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<RequestId> {
    REQUEST_ID.try_with(|id| *id).ok()
}

/// Runs `f` with `id` as the current request id (for what a service does when called).
pub fn with_id<R>(id: RequestId, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

/// `fut` with `id` as the current request id whenever it is polled.
pub fn scope<F: std::future::Future>(
    id: RequestId,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(id, fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_paths_are_masked_and_other_paths_kept() {
        assert_eq!(loggable_path("/reset/abcDEF123"), "/reset/[token]");
        assert_eq!(loggable_path("/setup/abc/x"), "/setup/[token]/x");
        assert_eq!(loggable_path("/verify/"), "/verify/[token]");
        assert_eq!(loggable_path("/slices/7/status"), "/slices/7/status");
        assert_eq!(loggable_path("/staff/users/reset"), "/staff/users/reset");
    }

    #[test]
    fn ids_are_twelve_hex_digits_and_differ() {
        let (a, b) = (next_id().to_string(), next_id().to_string());
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(RequestId(0xabc).to_string(), "000000000abc");
        assert_eq!(RequestId(0xabc).header_value(), "000000000abc");
    }

    #[tokio::test]
    async fn the_id_is_current_inside_the_scope_only() {
        assert_eq!(current(), None);
        let seen = scope(RequestId(7), async { current() }).await;
        assert_eq!(seen, Some(RequestId(7)));
        assert_eq!(with_id(RequestId(8), current), Some(RequestId(8)));
    }
}
