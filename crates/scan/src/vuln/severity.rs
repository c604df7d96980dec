//! How bad a finding is: the CVSS base score of a record's vectors
//! (v3.0, v3.1 and v4.0, scored by the `cvss` crate as the specifications
//! define), and the ecosystem's own rating where it gives one (GitHub's
//! `MODERATE`, Debian's urgency, Ubuntu's priority).
//!
//! The rating of the distribution or database that ships the package comes
//! first (it knows how the package is built and used); the CVSS rating
//! otherwise.

use std::str::FromStr as _;

use serde::{Deserialize, Serialize};

use super::Score;

/// A severity level, ordered.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not rated.
    #[default]
    Unknown,
    /// Negligible, unimportant.
    Low,
    /// Medium, moderate.
    Medium,
    /// High, important.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lowercase name (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Reads a rating as ecosystems write it (case ignored): `critical`,
    /// `high`/`important`, `medium`/`moderate`, `low`/`negligible`/
    /// `unimportant`; anything else (`not yet assigned`) is `None`.
    pub fn from_rating(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" | "unimportant" => Severity::Low,
            _ => return None,
        })
    }

    /// The CVSS qualitative rating of a base score.
    pub fn of_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Severity, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unknown" => Ok(Severity::Unknown),
            other => Severity::from_rating(other).ok_or_else(|| {
                format!("unknown severity {s:?}: use low, medium, high or critical")
            }),
        }
    }
}

/// A CVSS base score with its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// The base score (0.0 to 10.0).
    pub score: f64,
    /// The vector it was computed from.
    pub vector: String,
}

/// The base score of a CVSS v3.x or v4.0 vector; `None` for anything
/// else (CVSS v2 vectors, malformed ones).
pub fn base_score(vector: &str) -> Option<f64> {
    let v = vector.trim();
    if v.starts_with("CVSS:4.0/") {
        let parsed = cvss::v4::Vector::from_str(v).ok()?;
        Some(parsed.score().value())
    } else if v.starts_with("CVSS:3.") {
        let parsed = cvss::v3::Vector::from_str(v).ok()?;
        Some(parsed.score().value())
    } else {
        None
    }
}

/// The highest CVSS base score among `scores`.
pub fn best_cvss<'a>(scores: impl IntoIterator<Item = &'a Score>) -> Option<Cvss> {
    scores
        .into_iter()
        .filter(|s| s.kind.starts_with("CVSS_V3") || s.kind.starts_with("CVSS_V4"))
        .filter_map(|s| {
            base_score(&s.score).map(|score| Cvss {
                score,
                vector: s.score.clone(),
            })
        })
        .max_by(|a, b| a.score.total_cmp(&b.score))
}

/// An ecosystem's own rating among `scores` (entries that are not CVSS,
/// such as `{"type": "Ubuntu", "score": "medium"}`).
pub fn rating_in<'a>(scores: impl IntoIterator<Item = &'a Score>) -> Option<Severity> {
    scores
        .into_iter()
        .filter(|s| !s.kind.starts_with("CVSS"))
        .find_map(|s| Severity::from_rating(&s.score))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_base_scores_as_the_specifications_compute_them() {
        // Examples of the v3.1 specification and FIRST's calculators.
        for (vector, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
        ] {
            let got = base_score(vector).unwrap();
            assert!((got - want).abs() < 0.05, "{vector}: {got} != {want}");
        }
        assert_eq!(base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), None);
        assert_eq!(base_score("CVSS:3.1/AV:X"), None);
        assert_eq!(Severity::of_score(9.8), Severity::Critical);
        assert_eq!(Severity::of_score(6.1), Severity::Medium);
    }

    #[test]
    fn ratings_as_ecosystems_write_them() {
        assert_eq!(Severity::from_rating("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::from_rating("important"), Some(Severity::High));
        assert_eq!(Severity::from_rating("unimportant"), Some(Severity::Low));
        assert_eq!(Severity::from_rating("not yet assigned"), None);
        let scores = [
            Score {
                kind: "CVSS_V3".into(),
                score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N".into(),
            },
            Score {
                kind: "Ubuntu".into(),
                score: "high".into(),
            },
        ];
        assert_eq!(best_cvss(&scores).unwrap().score, 6.1);
        assert_eq!(rating_in(&scores), Some(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
    }
}
