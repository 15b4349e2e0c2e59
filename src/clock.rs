//! Time as the whole program sees it: the current Unix second, and how a moment is written
//! for people (pages, mail, the command line). No layer above has its own copy.

/// The current time in Unix seconds, moved by the test clock if one is set.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + offset()
}

/// The environment variable that moves the whole program's clock by so many seconds (a test
/// clock: terms end, warnings fall due and sessions expire as if that much time had passed).
/// Never set in production; the master says so in its log at start when it is.
pub const TEST_OFFSET_ENV: &str = "TEST_SLICES_CLOCK_OFFSET_SECS";

/// The test clock's offset in seconds (0 unless [`TEST_OFFSET_ENV`] is set), read once.
pub fn offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(TEST_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// A day written `2026-12-18` as the Unix second it starts (UTC).
pub fn parse_day(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), fmt)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp())
}

/// A moment written `2026-12-03 22:15:01` (as `vzctl snapshot-list` prints it; read as
/// UTC) as Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s.trim(), fmt)
        .ok()
        .map(|d| d.assume_utc().unix_timestamp())
}

/// Unix seconds as the day they fall in, `2026-12-18` (UTC).
pub fn format_day(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

/// Unix seconds as `2026-11-29 14:05 UTC` (empty for a moment that cannot be written).
pub fn format_time(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

/// Unix seconds as `2026-11-29T14:05:00Z`.
pub fn format_rfc3339(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_written_in_utc_to_the_minute() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_796_047_500), "2026-11-30 14:05 UTC");
        assert_eq!(format_time(i64::MAX), "");
    }

    #[test]
    fn days_are_read_and_written_in_utc() {
        assert_eq!(
            parse_day("2026-11-30"),
            Some(1_796_000_000 - 1_796_000_000 % 86_400)
        );
        assert_eq!(format_day(parse_day("2026-12-18").unwrap()), "2026-12-18");
        assert_eq!(
            format_day(parse_day("2026-12-18").unwrap() + 86_399),
            "2026-12-18"
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "18/12/2026",
            "2026-12-18; rm",
            "99999-01-01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
