//! A 5-field cron schedule, evaluated in UTC, on the `croner` crate.
//!
//! `minute hour day-of-month month day-of-week`, each field `*`, a number,
//! a range `a-b`, a step `*/n` or `a-b/n`, or a comma-separated list of
//! those; months and weekdays also by their English three-letter names
//! (`jan`, `mon`); weekday 0 and 7 are Sunday. As in classic cron, when
//! both day fields are restricted a day matches if either does. The macros
//! `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly`
//! are accepted. Seconds and years are not fields of berth's schedules.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::Cron;

/// How far ahead a schedule is looked at (`0 0 29 feb *` fires within it).
const HORIZON_MS: i64 = 5 * 366 * 86_400_000;

/// A parsed schedule.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

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

/// The fields, their names and allowed values.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
];

/// Names the field that `croner` refused (its messages do not): each
/// field is tried alone, the others `*`.
fn explain(pattern: &str, e: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    for (i, (name, allowed)) in FIELDS.iter().enumerate() {
        let Some(value) = fields.get(i) else { break };
        let mut probe = ["*"; 5];
        probe[i] = value;
        if let Err(why) = Cron::new(&probe.join(" ")).parse() {
            return format!("{name} field {value:?} is invalid (allowed: {allowed}, ranges a-b, steps */n, lists): {why}");
        }
    }
    e.to_string()
}

impl Schedule {
    /// Parses a cron expression.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        let expanded = match trimmed {
            "@midnight" => "@daily",
            other => other,
        };
        if !expanded.starts_with('@') && expanded.split_whitespace().count() != 5 {
            return Err(format!(
                "schedule {text:?} must have 5 fields: minute hour day-of-month month day-of-week \
                 (e.g. \"0 3 * * *\" for 03:00 UTC every day)"
            ));
        }
        let cron = Cron::new(expanded)
            .parse()
            .map_err(|e| format!("schedule {text:?}: {}", explain(expanded, &e)))?;
        Ok(Schedule {
            text: trimmed.to_owned(),
            cron,
        })
    }

    /// The first time (Unix ms, on a minute) strictly after `after` that the
    /// schedule fires; `None` if it never does within five years (e.g.
    /// `0 0 31 2 *`).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let from: DateTime<Utc> = DateTime::from_timestamp(after.div_euclid(1000), 0)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        let at = next.timestamp_millis();
        (at <= after.saturating_add(HORIZON_MS)).then_some(at)
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
        let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00Z");
        berth_oci::time::Timestamp::parse(&text).unwrap().0 * 1000
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
            (
                "60 * * * *",
                "minute field \"60\" is invalid (allowed: 0-59",
            ),
            ("* 24 * * *", "hour field \"24\" is invalid (allowed: 0-23"),
            (
                "* * 0 * *",
                "day-of-month field \"0\" is invalid (allowed: 1-31",
            ),
            ("* * * 13 *", "month field \"13\" is invalid (allowed: 1-12"),
            ("*/0 * * * *", "minute field \"*/0\""),
            ("5-1 * * * *", "minute field \"5-1\""),
            ("x * * * *", "minute field \"x\""),
            ("* * * * 8", "day-of-week field \"8\""),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
