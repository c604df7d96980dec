//! Alpine (apk) versions, compared as apk-tools compares them
//! (`src/version.c`): `NUMBER{.NUMBER}[LETTER]{_SUFFIX[NUMBER]}[-rNUMBER]`,
//! read as a stream of tokens. Numbers after a dot with leading zeros sort
//! as fractions (`1.01 < 1.1`), `_alpha`, `_beta`, `_pre`, `_rc` sort before
//! the plain version and `_cvs`, `_svn`, `_git`, `_hg`, `_p` after it, and a
//! version that goes on is newer than one that stops, unless what follows is
//! a pre-release suffix.

use std::cmp::Ordering;

/// Token kinds, in apk-tools' order (the order matters: a version whose
/// next token kind is smaller goes on further and is newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
    kind: Token,
}

impl Cursor<'_> {
    fn next_kind(&mut self) {
        let prev = self.kind;
        let mut n = Token::Invalid;
        match self.s.first() {
            None | Some(0) => n = Token::End,
            Some(c)
                if matches!(prev, Token::Digit | Token::DigitOrZero) && c.is_ascii_lowercase() =>
            {
                n = Token::Letter
            }
            Some(c) if prev == Token::Letter && c.is_ascii_digit() => n = Token::Digit,
            Some(c) if prev == Token::Suffix && c.is_ascii_digit() => n = Token::SuffixNo,
            Some(c) => {
                match c {
                    b'.' => n = Token::DigitOrZero,
                    b'_' => n = Token::Suffix,
                    b'-' if self.s.get(1) == Some(&b'r') => {
                        n = Token::RevisionNo;
                        self.s = &self.s[1..];
                    }
                    _ => {}
                }
                self.s = &self.s[1..];
            }
        }
        if n < prev
            && !((n == Token::DigitOrZero && prev == Token::Digit)
                || (n == Token::Suffix && prev == Token::SuffixNo)
                || (n == Token::Digit && prev == Token::Letter))
        {
            n = Token::Invalid;
        }
        self.kind = n;
    }

    fn token(&mut self) -> i64 {
        if self.s.is_empty() {
            self.kind = Token::End;
            return 0;
        }
        let mut v: i64 = 0;
        let mut i = 0;
        let mut forced = None;
        match self.kind {
            Token::DigitOrZero if self.s[0] == b'0' => {
                while i < self.s.len() && self.s[i] == b'0' {
                    i += 1;
                }
                forced = Some(Token::Digit);
                v = -(i as i64);
            }
            Token::DigitOrZero | Token::Digit | Token::SuffixNo | Token::RevisionNo => {
                while i < self.s.len() && self.s[i].is_ascii_digit() {
                    v = v
                        .saturating_mul(10)
                        .saturating_add(i64::from(self.s[i] - b'0'));
                    i += 1;
                }
            }
            Token::Letter => {
                v = i64::from(self.s[0]);
                i = 1;
            }
            Token::Suffix => {
                if let Some((k, s)) = PRE
                    .iter()
                    .enumerate()
                    .find(|(_, s)| self.s.starts_with(s.as_bytes()))
                {
                    v = k as i64 - PRE.len() as i64;
                    i = s.len();
                } else if let Some((k, s)) = POST
                    .iter()
                    .enumerate()
                    .find(|(_, s)| self.s.starts_with(s.as_bytes()))
                {
                    v = k as i64;
                    i = s.len();
                } else {
                    self.kind = Token::Invalid;
                    return -1;
                }
            }
            Token::Invalid | Token::End => {
                self.kind = Token::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            self.kind = Token::End;
        } else if let Some(k) = forced.filter(|_| self.s[0].is_ascii_digit()) {
            // Leading zeros and then more digits (`1.01`).
            self.kind = k;
        } else {
            // A number that was all zeros ends like any other: `1.0_rc1`
            // goes on with its suffix, so it sorts before `1.0` (as
            // apk-tools 2.12 and later do).
            self.next_kind();
        }
        v
    }
}

/// Compares two apk versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut x = Cursor {
        s: a.as_bytes(),
        kind: Token::Digit,
    };
    let mut y = Cursor {
        s: b.as_bytes(),
        kind: Token::Digit,
    };
    let (mut av, mut bv) = (0, 0);
    while x.kind == y.kind && x.kind != Token::End && x.kind != Token::Invalid && av == bv {
        av = x.token();
        bv = y.token();
    }
    match av.cmp(&bv) {
        Ordering::Equal => {}
        other => return other,
    }
    if x.kind == y.kind {
        return Ordering::Equal;
    }
    // A pre-release suffix next makes the longer version older (peeking
    // on copies, as apk-tools does).
    let pre = |c: &Cursor<'_>| {
        let mut peek = Cursor {
            s: c.s,
            kind: c.kind,
        };
        c.kind == Token::Suffix && peek.token() < 0
    };
    if pre(&x) {
        return Ordering::Less;
    }
    if pre(&y) {
        return Ordering::Greater;
    }
    // The one that goes on (smaller next kind) is newer.
    y.kind.cmp(&x.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, op: char, b: &str) {
        let want = match op {
            '<' => Ordering::Less,
            '>' => Ordering::Greater,
            _ => Ordering::Equal,
        };
        assert_eq!(compare(a, b), want, "{a} {op} {b}");
        assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
    }

    /// Cases of apk-tools' own `test/version.data`, and the suffix order
    /// Alpine documents.
    #[test]
    fn apk_rules() {
        for (a, op, b) in [
            ("23_foo", '>', "4_beta"),
            ("0.1.0_alpha", '<', "2.2.39-r1"),
            ("2.2.39-r1", '>', "1.0.4-r3"),
            ("1.0.4-r4", '<', "1.6"),
            ("0.7-r1", '<', "1.0.0"),
            ("1.1", '>', "1.1_alpha1"),
            ("1.2.1", '>', "1.2"),
            ("1.2", '<', "1.3_alpha"),
            ("1.3_alpha2", '<', "1.3_alpha3"),
            ("0.8_beta4", '<', "4.8-r1"),
            ("3.10.18-r1", '>', "2.3.0b-r1"),
            ("2.3.0b-r1", '<', "2.3.0b-r2"),
            ("0.12.3", '>', "0.12"),
            ("0.13_beta5", '>', "0.9.12"),
            ("1.2.12.1", '<', "1.2.13"),
            ("3.1_p16", '<', "3.1_p17"),
            ("3.1_p17", '>', "1.06-r6"),
            ("1.06-r6", '<', "006"),
            ("006", '>', "1.0.0"),
            ("1.2.2-r1", '>', "1.2.2"),
            ("2.59", '<', "20050718-r1"),
            ("3.9.8-r5", '>', "2.01.01_alpha10"),
            ("1.0", '>', "0.99.3.20040818"),
            ("1.39", '>', "1.00_beta2"),
            ("1.12.12-r2", '<', "2.8.0.6-r1"),
            ("4.2.52_p2-r1", '<', "4.2.52_p4-r2"),
            ("2.18.3-r10", '>', "1.05-r18"),
            ("20060720", '>', "3.0.20060720"),
            ("2.5.1-r8", '<', "2.5.1a-r1"),
            ("2.0.0_rc3-r1", '>', "1.5"),
            ("3.0.0-r2", '<', "021109-r3"),
            ("0.9.16-r1", '<', "3.9_pre20060124"),
            ("0.01", '<', "0.06"),
            ("1.1.7", '<', "6b-r7"),
            ("0.10.0", '<', "0.10.1_rc1"),
            ("0.15.1b-r2", '>', "0.15.1b"),
            ("22.7-r1", '<', "22.7.3-r1"),
            ("2.1_pre20", '<', "2.1_pre26"),
            ("2.10.1", '>', "02.08.01b"),
            ("3.81", '>', "1.6d"),
            ("1.2.07.8", '<', "1.2.12.04"),
            ("1.07-r1", '<', "1.07.5"),
            ("0.1_pre20060810", '<', "0.1_pre20060817"),
            ("0.59s-r11", '<', "0.65"),
            ("0.20070118", '<', "0.20070207_rc1"),
            ("0.20070207_rc1", '<', "1.0"),
            ("4.5_p1-r1", '>', "4.5_p1"),
            ("0.9.8c-r1", '<', "0.9.8d"),
            ("1.7", '<', "1.7b"),
            ("1.8.5", '<', "1.8.5_p2"),
            ("2.9.11_pre20051101-r3", '>', "2.9.11_pre20051101"),
            ("1.6.8_p12-r1", '>', "1.6.8_p9-r2"),
            ("0.9.28-r2", '<', "0.9.28.1"),
            ("0.9.28.1", '<', "087-r1"),
            ("104-r11", '>', "104-r9"),
            ("1.2.5_rc2", '>', "0.1"),
            ("20040406-r1", '>', "2.12r-r4"),
            ("7.0.17", '<', "7.0.174"),
            ("1.3-r0", '<', "1.3.1-r0"),
            ("1.3_pre1-r1", '<', "1.3.2"),
            ("1.0_p10-r0", '>', "1.0_p9-r0"),
            ("0.1.0_alpha_pre2", '<', "0.1.0_alpha"),
            (
                "1.0.0_pre20191002222144-r0",
                '<',
                "1.0.0_pre20210530193627-r0",
            ),
            ("2.34", '>', "0.1.0_alpha"),
            ("0.1.0_alpha", '=', "0.1.0_alpha"),
            ("0.1.0_alpha", '<', "0.1.3_alpha"),
            ("0.1.0_alpha2", '>', "0.1.0_alpha"),
            ("1.0_alpha", '<', "1.0_beta"),
            ("1.0_beta", '<', "1.0_pre"),
            ("1.0_pre", '<', "1.0_rc"),
            ("1.0_rc1", '<', "1.0"),
            ("1.0", '<', "1.0_cvs"),
            ("1.0_cvs", '<', "1.0_svn"),
            ("1.0_svn", '<', "1.0_git"),
            ("1.0_git", '<', "1.0_hg"),
            ("1.0_hg", '<', "1.0_p1"),
            ("1.0", '<', "1.0-r1"),
            ("1.0-r1", '<', "1.0-r2"),
            ("1.0-r9", '<', "1.0-r10"),
            ("1.0a", '>', "1.0"),
            ("1.0b", '>', "1.0a"),
            ("1.0.1", '>', "1.0a"),
            ("1.01", '<', "1.1"),
            ("1.001", '<', "1.01"),
            ("1.0", '>', "1"),
            ("3.3.2-r0", '<', "3.3.2-r1"),
            ("3.3.10-r0", '>', "3.3.2-r1"),
            ("1.2.5-r0", '=', "1.2.5-r0"),
            ("2.0_rc1-r0", '<', "2.0-r0"),
            ("1.36.1-r29", '<', "1.37.0-r0"),
        ] {
            check(a, op, b);
        }
    }
}
