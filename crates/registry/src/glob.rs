//! Glob patterns over repository names and tags.
//!
//! One syntax everywhere a rule names repositories or tags (tag rules,
//! retention policies, token patterns):
//!
//! - `*` matches any run of characters except `/`;
//! - `**` matches any run of characters, `/` included;
//! - `?` matches one character except `/`;
//! - everything else matches itself.
//!
//! A *scope* names repositories: a bare namespace (`acme`, no glob
//! characters) covers `acme` and every repository below it (`acme/web`,
//! `acme/tools/cli`); anything else is a glob over the full repository name
//! (`acme/web-*`, `**/cache`).

/// Whether `text` matches the glob `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    // Iterative matcher with backtracking to the last star; `**` and `*`
    // differ only in whether they may swallow a '/'.
    let (mut pi, mut ti) = (0usize, 0usize);
    // (pattern index after the star, text index the star matched up to, star crosses '/')
    let mut star: Option<(usize, usize, bool)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            let double = pi + 1 < p.len() && p[pi + 1] == b'*';
            pi += if double { 2 } else { 1 };
            star = Some((pi, ti, double));
            continue;
        }
        if pi < p.len() && (p[pi] == t[ti] || (p[pi] == b'?' && t[ti] != b'/')) {
            pi += 1;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st, double)) if double || t[st] != b'/' => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1, double));
            }
            _ => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `pattern` contains glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether the scope `scope` (a namespace or a repository glob) covers
/// `repository`.
pub fn scope_covers(scope: &str, repository: &str) -> bool {
    if is_glob(scope) {
        matches(scope, repository)
    } else {
        repository == scope
            || repository
                .strip_prefix(scope)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The namespace of a repository: its first path component.
pub fn namespace(repository: &str) -> &str {
    repository.split('/').next().unwrap_or(repository)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_star_stays_within_a_component() {
        assert!(matches("v*", "v1.2.3"));
        assert!(matches("*", ""));
        assert!(matches("pr-*", "pr-123"));
        assert!(!matches("pr-*", "main"));
        assert!(matches("acme/*", "acme/web"));
        assert!(!matches("acme/*", "acme/web/api"));
        assert!(matches("acme/**", "acme/web/api"));
        assert!(matches("**/cache", "a/b/cache"));
        assert!(!matches("**/cache", "a/b/cache2"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("v?.*", "v1.0"));
        assert!(!matches("?", "/"));
        assert!(matches("main", "main"));
        assert!(!matches("main", "main2"));
        assert!(matches("*-rc*", "1.0-rc1"));
    }

    #[test]
    fn scopes() {
        assert!(scope_covers("acme", "acme"));
        assert!(scope_covers("acme", "acme/web"));
        assert!(scope_covers("acme", "acme/a/b"));
        assert!(!scope_covers("acme", "acmecorp/web"));
        assert!(scope_covers("acme/web-*", "acme/web-api"));
        assert!(!scope_covers("acme/web-*", "acme/api"));
        assert_eq!(namespace("acme/web/api"), "acme");
        assert_eq!(namespace("solo"), "solo");
    }
}
