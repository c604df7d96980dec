//! A small 5-field cron schedule, evaluated in UTC.
//!
//! `minute hour day-of-month month day-of-week`, each field `*`, a number,
//! a range `a-b`, a step `*/n` or `a-b/n`, or a comma-separated list of
//! those; months and weekdays also by their English three-letter names
//! (`jan`, `mon`); weekday 0 and 7 are Sunday. As in classic cron, when
//! both day fields are restricted a day matches if either does. The macros
//! `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` are accepted.

use std::fmt;

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

/// A parsed schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one field into a bit set over `lo..=hi`.
fn field(
    text: &str,
    name: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| s.eq_ignore_ascii_case(n)) {
            return Ok(i as u32 + base);
        }
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{name} field: {s:?} is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{name} field: {n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 =
                    s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{name} field: step {s:?} must be a positive number")
                    })?;
                (r, step)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { hi } else { v })
        };
        if a > b {
            return Err(format!("{name} field: range {a}-{b} is backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

/// Year, month (1-12) and day (1-31) of a day number since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Schedule {
    /// Parses a cron expression.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "schedule {text:?} must have 5 fields: minute hour day-of-month month day-of-week \
                 (e.g. \"0 3 * * *\" for 03:00 UTC every day)"
            ));
        }
        let mut weekdays = field(f[4], "day-of-week", 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            text: text.trim().to_owned(),
            minutes: field(f[0], "minute", 0, 59, &[], 0)?,
            hours: field(f[1], "hour", 0, 23, &[], 0)?,
            days: field(f[2], "day-of-month", 1, 31, &[], 0)?,
            months: field(f[3], "month", 1, 12, &MONTHS, 1)?,
            weekdays,
            days_any: f[2] == "*",
            weekdays_any: f[4] == "*",
        })
    }

    fn day_matches(&self, days: i64) -> bool {
        let (_, month, dom) = civil(days);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let weekday = (days + 4).rem_euclid(7);
        let by_dom = self.days & (1 << dom) != 0;
        let by_dow = self.weekdays & (1 << weekday) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => by_dom,
            (true, false) => by_dow,
            (false, false) => by_dom || by_dow,
        }
    }

    /// The first time (Unix ms, on a minute) strictly after `after` that the
    /// schedule fires; `None` if it never does within five years (e.g.
    /// `0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = after.div_euclid(MINUTE) + 1;
        let first_day = (start * MINUTE).div_euclid(DAY);
        for day in first_day..first_day + 5 * 366 {
            if !self.day_matches(day) {
                continue;
            }
            for hour in 0..24i64 {
                if self.hours & (1 << hour) == 0 {
                    continue;
                }
                for minute in 0..60i64 {
                    let at = day * DAY + hour * 3_600_000 + minute * MINUTE;
                    if self.minutes & (1 << minute) != 0 && at >= start * MINUTE {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// Whether the schedule fired after `last` and at or before `now`.
    pub fn due(&self, last: i64, now: i64) -> bool {
        self.next_after(last).is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn t(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        // Days from civil (inverse of `civil`), for the tests only.
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = i64::from((mo + 9) % 12);
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * DAY + h * 3_600_000 + mi * MINUTE
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(t(2024, 2, 29, 0, 0) / DAY, 19_782);
    }

    #[test]
    fn next_fire_times() {
        let daily = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(t(2024, 5, 1, 2, 59)),
            Some(t(2024, 5, 1, 3, 0))
        );
        assert_eq!(
            daily.next_after(t(2024, 5, 1, 3, 0)),
            Some(t(2024, 5, 2, 3, 0))
        );
        assert!(daily.due(t(2024, 5, 1, 3, 0), t(2024, 5, 2, 3, 0)));
        assert!(!daily.due(t(2024, 5, 1, 3, 0), t(2024, 5, 2, 2, 59)));

        let every15 = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            every15.next_after(t(2024, 5, 1, 10, 7)),
            Some(t(2024, 5, 1, 10, 15))
        );
        assert_eq!(
            every15.next_after(t(2024, 5, 1, 10, 45) + 1),
            Some(t(2024, 5, 1, 11, 0))
        );

        // 2024-05-04 is a Saturday; Sunday may be 0 or 7 or `sun`.
        for text in ["30 1 * * 0", "30 1 * * 7", "30 1 * * SUN"] {
            let s = Schedule::parse(text).unwrap();
            assert_eq!(
                s.next_after(t(2024, 5, 4, 12, 0)),
                Some(t(2024, 5, 5, 1, 30)),
                "{text}"
            );
        }
        let weekdays = Schedule::parse("0 9 * * mon-fri").unwrap();
        assert_eq!(
            weekdays.next_after(t(2024, 5, 3, 9, 0)),
            Some(t(2024, 5, 6, 9, 0))
        );
        // Both day fields restricted: either matches (the 1st, or a Monday).
        let either = Schedule::parse("0 0 1 * mon").unwrap();
        assert_eq!(
            either.next_after(t(2024, 5, 1, 0, 0)),
            Some(t(2024, 5, 6, 0, 0))
        );
        let leap = Schedule::parse("0 0 29 feb *").unwrap();
        assert_eq!(
            leap.next_after(t(2024, 3, 1, 0, 0)),
            Some(t(2028, 2, 29, 0, 0))
        );
        assert_eq!(Schedule::parse("0 0 31 2 *").unwrap().next_after(0), None);
        assert_eq!(
            Schedule::parse("@daily")
                .unwrap()
                .next_after(t(2024, 5, 1, 0, 0)),
            Some(t(2024, 5, 2, 0, 0))
        );
        let list = Schedule::parse("5,35 8-10/2 * * *").unwrap();
        assert_eq!(
            list.next_after(t(2024, 5, 1, 8, 5)),
            Some(t(2024, 5, 1, 8, 35))
        );
        assert_eq!(
            list.next_after(t(2024, 5, 1, 8, 35)),
            Some(t(2024, 5, 1, 10, 5))
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        for (text, want) in [
            ("0 3 * *", "5 fields"),
            ("60 * * * *", "outside 0-59"),
            ("* 24 * * *", "outside 0-23"),
            ("* * 0 * *", "outside 1-31"),
            ("* * * 13 *", "outside 1-12"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("x * * * *", "not a number"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
