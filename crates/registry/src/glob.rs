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

use berth_oci::RepositoryName;

/// One element of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A character that matches itself.
    Literal(char),
    /// `?`: one character except `/`.
    One,
    /// `*`: any run of characters except `/`.
    Star,
    /// `**`: any run of characters.
    DoubleStar,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                // `***` and longer runs are `**`.
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                Token::DoubleStar
            }
            '*' => Token::Star,
            '?' => Token::One,
            c => Token::Literal(c),
        });
    }
    out
}

/// Whether `text` matches the glob `pattern`.
///
/// The pattern is run as a nondeterministic automaton whose states are the
/// positions between its tokens: every state reachable after each
/// character is kept, so no choice of how much a star swallows is ever
/// dropped (a backtracking matcher that remembers only the last star
/// misses `acme/**/web-*` against `acme/x/web-a/web-b`). Time is
/// `O(pattern × text)`, memory `O(pattern)`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let tokens = tokens(pattern);
    let n = tokens.len();
    let mut current = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    current[0] = true;
    close(&tokens, &mut current);
    for c in text.chars() {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for (i, token) in tokens.iter().enumerate() {
            if !current[i] {
                continue;
            }
            let (stay, advance) = match *token {
                Token::Literal(l) => (false, l == c),
                Token::One => (false, c != '/'),
                Token::Star => (c != '/', false),
                Token::DoubleStar => (true, false),
            };
            next[i] |= stay;
            next[i + 1] |= advance;
            any |= stay || advance;
        }
        if !any {
            return false;
        }
        close(&tokens, &mut next);
        std::mem::swap(&mut current, &mut next);
    }
    current[n]
}

/// Adds the states reachable without reading: a star may match nothing.
fn close(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if states[i] && matches!(token, Token::Star | Token::DoubleStar) {
            states[i + 1] = true;
        }
    }
}

/// Whether `pattern` contains glob characters.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Whether the scope `scope` (a namespace or a repository glob) covers
/// `repository`.
pub fn scope_covers(scope: &str, repository: &RepositoryName) -> bool {
    let repository = repository.as_str();
    if is_glob(scope) {
        matches(scope, repository)
    } else {
        repository == scope
            || repository
                .strip_prefix(scope)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The namespace a scope is confined to: its first path component
/// (`acme` of `acme/web-*`), a glob itself when the scope starts with one.
pub fn scope_namespace(scope: &str) -> &str {
    scope.split('/').next().unwrap_or(scope)
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
    fn a_star_after_a_double_star_keeps_both() {
        assert!(matches("acme/**/web-*", "acme/x/web-a/web-b"));
        assert!(matches("**/web-*", "a/web-x/b/web-y"));
        assert!(!matches("acme/**/web-*", "acme/x/web-a/api"));
        assert!(matches("**a*", "x/y/za"));
        assert!(matches("a**b*c", "a/x/bzc"));
        assert!(!matches("a**b*c", "a/b/b/c"));
    }

    /// The reference: the glob as a regular expression.
    fn reference(pattern: &str) -> regex::Regex {
        let mut re = String::from("^");
        for t in tokens(pattern) {
            match t {
                Token::Literal(c) => re.push_str(&regex::escape(&c.to_string())),
                Token::One => re.push_str("[^/]"),
                Token::Star => re.push_str("[^/]*"),
                Token::DoubleStar => re.push_str("(?s:.*)"),
            }
        }
        re.push('$');
        regex::Regex::new(&re).expect("reference regex")
    }

    /// Every string of length at most `max` over `alphabet`.
    fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn agrees_with_a_regular_expression_on_every_small_case() {
        // Exhaustive over small alphabets: every pattern of up to 5
        // characters against every text of up to 5.
        let patterns = all_strings(&['a', '/', '*', '?'], 5);
        let texts = all_strings(&['a', 'b', '/'], 5);
        for p in &patterns {
            let re = reference(p);
            for t in &texts {
                assert_eq!(matches(p, t), re.is_match(t), "pattern {p:?} text {t:?}");
            }
        }
    }

    #[test]
    fn agrees_with_a_regular_expression_on_random_long_cases() {
        // A fixed-seed xorshift drives longer patterns and texts, biased so
        // that texts often match.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let pattern_chars = ['a', 'b', '-', '/', '*', '*', '?', '.'];
        let text_chars = ['a', 'b', '-', '/', '.'];
        for _ in 0..20_000 {
            let p: String = (0..next(12))
                .map(|_| pattern_chars[next(pattern_chars.len())])
                .collect();
            let t: String = (0..next(16))
                .map(|_| text_chars[next(text_chars.len())])
                .collect();
            assert_eq!(
                matches(&p, &t),
                reference(&p).is_match(&t),
                "pattern {p:?} text {t:?}"
            );
        }
    }

    #[test]
    fn scopes() {
        let covers = |scope, repo| scope_covers(scope, &RepositoryName::parse(repo).unwrap());
        assert!(covers("acme", "acme"));
        assert!(covers("acme", "acme/web"));
        assert!(covers("acme", "acme/a/b"));
        assert!(!covers("acme", "acmecorp/web"));
        assert!(covers("acme/web-*", "acme/web-api"));
        assert!(!covers("acme/web-*", "acme/api"));
        assert_eq!(scope_namespace("acme/web-*"), "acme");
        assert_eq!(scope_namespace("solo"), "solo");
    }
}
