//! Semantic versions as they appear in git tags (`v1.2.3`, `1.2.3-rc.1+build.5`).

/// A parsed semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    /// The git tag as written.
    pub raw: String,
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// Pre-release identifiers (`rc.1`).
    pub pre: Option<String>,
    /// Build metadata (`build.5`).
    pub build: Option<String>,
}

impl Semver {
    /// Parses `[v]MAJOR.MINOR.PATCH[-pre][+build]`.
    pub fn parse(tag: &str) -> Option<Semver> {
        let body = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let (body, build) = match body.split_once('+') {
            Some((b, m)) => (b, Some(m)),
            None => (body, None),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (body, None),
        };
        let mut nums = core.split('.');
        let mut next = || -> Option<u64> {
            let n = nums.next()?;
            let valid = !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'));
            if valid {
                n.parse().ok()
            } else {
                None
            }
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if nums.next().is_some() {
            return None;
        }
        let ident_ok = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|p| {
                    !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        if !pre.is_none_or(ident_ok) || !build.is_none_or(ident_ok) {
            return None;
        }
        Some(Semver {
            raw: tag.to_owned(),
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
            build: build.map(str::to_owned),
        })
    }

    /// The version without a `v` prefix; `+` (not allowed in tags) becomes `-`.
    pub fn version(&self) -> String {
        let mut v = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if let Some(p) = &self.pre {
            v.push('-');
            v.push_str(p);
        }
        if let Some(b) = &self.build {
            v.push('-');
            v.push_str(b);
        }
        v
    }

    /// The tags of a release: the git tag as written, the full version,
    /// and for stable releases `MAJOR.MINOR` and (from 1.0 on) `MAJOR`.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.raw.replace('+', "-"), self.version()];
        if self.pre.is_none() {
            tags.push(format!("{}.{}", self.major, self.minor));
            if self.major > 0 {
                tags.push(self.major.to_string());
            }
        }
        tags.dedup();
        tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = Semver::parse("v1.2.3-rc.1+b.5").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 2, 3));
        assert_eq!(v.pre.as_deref(), Some("rc.1"));
        assert_eq!(v.version(), "1.2.3-rc.1-b.5");
        for bad in [
            "1.2",
            "v1.2.3.4",
            "01.2.3",
            "v1.2.x",
            "1.2.3-",
            "1.2.3-a..b",
            "release",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            Semver::parse("2.0.0").unwrap().tags(),
            ["2.0.0", "2.0", "2"]
        );
    }
}
