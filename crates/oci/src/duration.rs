//! Durations as people write them in settings, policies and flags: a whole
//! number and one unit, `45s`, `90m`, `12h`, `30d`, `2w` (a bare `0` needs
//! no unit). The one parser of berth: the `berth serve` settings, retention
//! policies and the management commands all take durations through it, so
//! every place accepts the same spellings and refuses the same mistakes
//! (an unknown unit, a number without one, a value that overflows).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The units, largest first, with their length in seconds.
const UNITS: [(&str, u64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("invalid duration {0:?}: use a whole number and s, m, h, d or w (\"30d\")")]
    Invalid(String),
    /// A number without its unit (other than `0`).
    #[error("duration {0:?} has no unit: add s, m, h, d or w (\"{0}s\")")]
    NoUnit(String),
    /// Longer than berth can count.
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Parses `45s`, `90m`, `12h`, `30d`, `2w` or `0`.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(DurationError::Invalid(s.to_owned()));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::Overflow(s.to_owned()))?;
    let size = match unit {
        "" if n == 0 => 0,
        "" => return Err(DurationError::NoUnit(s.to_owned())),
        u => match UNITS.iter().find(|(name, _)| *name == u) {
            Some((_, size)) => *size,
            None => return Err(DurationError::Invalid(s.to_owned())),
        },
    };
    let secs = n
        .checked_mul(size)
        // Every duration must also fit in i64 milliseconds (the clock of
        // the metadata layer) without overflow.
        .filter(|secs| *secs <= (i64::MAX / 1000) as u64)
        .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
    Ok(Duration::from_secs(secs))
}

/// Formats a duration in its largest whole unit up to days (`14d`, `36h`,
/// `90m`, `0s`); sub-second parts are dropped. [`parse`] reads it back.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    for (unit, size) in &UNITS[1..] {
        if secs >= *size && secs.is_multiple_of(*size) {
            return format!("{}{unit}", secs / *size);
        }
    }
    format!("{secs}s")
}

/// A duration that reads and writes as text (`"24h"`): in TOML, on the
/// command line and in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Span(pub Duration);

impl Span {
    /// A span of `secs` seconds.
    pub const fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Milliseconds (never overflows: [`parse`] bounds every span).
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl FromStr for Span {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Span, DurationError> {
        parse(s).map(Span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl From<Span> for Duration {
    fn from(s: Span) -> Duration {
        s.0
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        for (text, secs) in [
            ("45s", 45),
            ("90m", 5400),
            ("12h", 43_200),
            ("30d", 2_592_000),
            ("2w", 1_209_600),
            (" 1h ", 3600),
            ("0", 0),
            ("0s", 0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        assert!(matches!(parse("90"), Err(DurationError::NoUnit(_))));
        for bad in ["", "h", "1.5h", "-1h", "1 h", "1y", "1H", "1h30m", "soon"] {
            assert!(
                matches!(parse(bad), Err(DurationError::Invalid(_))),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        for big in [
            "99999999999999999999999s",
            "18446744073709551615w",
            "9223372036854776s",
        ] {
            assert!(
                matches!(parse(big), Err(DurationError::Overflow(_))),
                "{big}"
            );
        }
        assert!(parse("9223372036854775s").is_ok(), "the largest i64 ms");
        assert!(parse("1x")
            .unwrap_err()
            .to_string()
            .contains("s, m, h, d or w"));
    }

    #[test]
    fn formats_in_the_largest_unit() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (5400, "90m"),
            (86_400, "1d"),
            (129_600, "36h"),
            (1_209_600, "14d"),
        ] {
            assert_eq!(format(Duration::from_secs(secs)), text);
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)));
        }
        let span: Span = "24h".parse().unwrap();
        assert_eq!(span.to_string(), "1d");
        assert_eq!(span.as_millis(), 86_400_000);
    }
}
