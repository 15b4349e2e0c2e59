//! Every request runs inside a `request` span with an id of its own: its log lines carry it,
//! the response names it in `X-Request-Id`, and a 500 page shows it as the reference to quote.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The response header that names the request's id.
pub const HEADER: &str = "x-request-id";

/// A new request id: 12 hex digits, unique within the process and unlikely to repeat across
/// restarts (a random start, then counting).
pub fn next_id() -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(rand::random::<u64>);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{:012x}", start.wrapping_add(n) & 0xffff_ffff_ffff)
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Runs `f` with `id` as the current request id (for what a service does when called).
pub fn with_id<R>(id: String, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

/// `fut` with `id` as the current request id whenever it is polled.
pub fn scope<F: std::future::Future>(
    id: String,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(id, fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_hex_digits_and_differ() {
        let (a, b) = (next_id(), next_id());
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn the_id_is_current_inside_the_scope_only() {
        assert_eq!(current(), None);
        let seen = scope("abc".into(), async { current() }).await;
        assert_eq!(with_id("def".into(), current).as_deref(), Some("def"));
        assert_eq!(seen.as_deref(), Some("abc"));
    }
}
