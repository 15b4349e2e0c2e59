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
    match Civil::of(t) {
        Some(c) => c.write(10),
        None => slow(t, time::macros::format_description!("[year]-[month]-[day]")),
    }
}

/// Unix seconds as `2026-11-29 14:05 UTC` (empty for a moment that cannot be written).
pub fn format_time(t: i64) -> String {
    match Civil::of(t) {
        Some(c) => {
            let mut s = c.write(16);
            s.replace_range(10..11, " ");
            s.push_str(" UTC");
            s
        }
        None => slow(
            t,
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"),
        ),
    }
}

/// Unix seconds as `2026-11-29T14:05:00Z`.
pub fn format_rfc3339(t: i64) -> String {
    match Civil::of(t) {
        Some(c) => {
            let mut s = c.write(19);
            s.push('Z');
            s
        }
        None => slow(
            t,
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
        ),
    }
}

/// A moment before 1970 or after 9999 (never on a page in practice), written by the `time`
/// crate: empty where it cannot be.
fn slow(t: i64, fmt: &[time::format_description::BorrowedFormatItem<'_>]) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

/// A moment from 1970 to 9999 as its UTC calendar date and time of day, by arithmetic alone
/// (pages write several per card: the `time` crate's formatting was a tenth of a dashboard).
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Civil {
    /// The first second of the year 10000.
    const END: i64 = 253_402_300_800;

    fn of(t: i64) -> Option<Civil> {
        if !(0..Self::END).contains(&t) {
            return None;
        }
        let (days, secs) = (t / 86_400, (t % 86_400) as u32);
        // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days),
        // with the year counted from March so that a leap day ends it.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Some(Civil {
            year,
            month,
            day,
            hour: secs / 3_600,
            minute: secs / 60 % 60,
            second: secs % 60,
        })
    }

    /// The first `len` bytes of `2026-11-29T14:05:00` (10: the day, 16: to the minute, 19:
    /// to the second), digit by digit (`format!` with padding cost more than the arithmetic).
    fn write(&self, len: usize) -> String {
        let y = self.year as u32;
        let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
        let [y0, y1] = two(y / 100);
        let [y2, y3] = two(y);
        let [mo0, mo1] = two(self.month);
        let [d0, d1] = two(self.day);
        let [h0, h1] = two(self.hour);
        let [mi0, mi1] = two(self.minute);
        let [s0, s1] = two(self.second);
        let all = [
            y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0,
            s1,
        ];
        let mut out = String::with_capacity(len + 4);
        // Only ASCII digits and separators.
        out.push_str(std::str::from_utf8(&all[..len]).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_writes_what_the_time_crate_writes() {
        // Every day boundary (and a second either side) from 1970 to 2200, leap years and
        // centuries included, then random moments up to the year 9999.
        let mut t = 0i64;
        let check = |t: i64| {
            assert_eq!(
                format_rfc3339(t),
                slow(
                    t,
                    time::macros::format_description!(
                        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                    )
                ),
                "{t}"
            );
            assert_eq!(
                format_time(t),
                slow(
                    t,
                    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")
                ),
                "{t}"
            );
            assert_eq!(
                format_day(t),
                slow(t, time::macros::format_description!("[year]-[month]-[day]")),
                "{t}"
            );
        };
        while t < 7_258_118_400 {
            for d in [-1, 0, 1, 43_261] {
                if t + d >= 0 {
                    check(t + d);
                }
            }
            t += 86_400;
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check((x % Civil::END as u64) as i64);
        }
        check(Civil::END - 1);
        assert_eq!(format_rfc3339(Civil::END - 1), "9999-12-31T23:59:59Z");
        assert_eq!(format_time(-86_400), "1969-12-31 00:00 UTC");
    }

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
