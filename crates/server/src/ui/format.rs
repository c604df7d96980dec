//! How the UI writes numbers and times: sizes in human units, times
//! relative to now with the exact UTC time beside them.

use maud::{html, Markup};

/// `1.4 MB`, `312 B`: decimal units, as registries and `docker images`
/// show them.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `2026-11-30 10:54:02 UTC` for Unix milliseconds.
pub(crate) fn exact(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-30T10:54:02Z` (the `datetime` attribute).
fn iso(ms: i64) -> String {
    let e = exact(ms);
    format!("{}T{}Z", &e[..10], &e[11..19])
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `3 minutes ago`, `in 2 days` for `ms` seen at `now`.
pub(crate) fn relative(ms: i64, now: i64) -> String {
    let delta = (now - ms) / 1000;
    let (n, future) = if delta >= 0 {
        (delta, false)
    } else {
        (-delta, true)
    };
    let (count, unit) = match n {
        0..=44 => return "just now".into(),
        45..=5399 => ((n + 30) / 60, "minute"),
        5400..=129_599 => ((n + 1800) / 3600, "hour"),
        129_600..=3_887_999 => ((n + 43_200) / 86_400, "day"),
        // Months up to 319 days, then years (as moment.js words them).
        3_888_000..=27_647_999 => ((n + 1_296_000) / 2_592_000, "month"),
        _ => ((n + 15_768_000) / 31_536_000, "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if future {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// A `<time>`: relative text, the exact time on hover.
pub(crate) fn time(ms: i64, now: i64) -> Markup {
    html! { time datetime=(iso(ms)) title=(exact(ms)) { (relative(ms, now)) } }
}

/// A time that may be absent (`never`).
pub(crate) fn maybe_time(ms: Option<i64>, now: i64, none: &str) -> Markup {
    match ms {
        Some(ms) => time(ms, now),
        None => html! { span.muted { (none) } },
    }
}

/// The first 12 hex digits of a digest, after its algorithm.
pub(crate) fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_human_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_400_000), "1.4 MB");
        assert_eq!(size(27_800_000), "28 MB");
        assert_eq!(size(3_000_000_000), "3.0 GB");
    }

    #[test]
    fn times_are_relative_with_the_exact_time_beside() {
        assert_eq!(exact(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(exact(1_764_500_042_000), "2025-11-30 10:54:02 UTC");
        assert_eq!(iso(1_709_210_096_000), "2024-02-29T12:34:56Z");
        let now = 10_000_000_000;
        assert_eq!(relative(now - 10_000, now), "just now");
        assert_eq!(relative(now - 180_000, now), "3 minutes ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(relative(now + 2 * 3_600_000, now), "in 2 hours");
        assert_eq!(relative(now - 400 * 86_400_000, now), "1 year ago");
    }

    #[test]
    fn digests_shorten_to_twelve_hex_digits() {
        assert_eq!(short_digest("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }
}
