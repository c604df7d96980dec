//! Maven versions, ordered as Maven's `ComparableVersion` orders them, in
//! its common cases: items split at `.`, `-`, `_` and between digits and
//! letters; numbers compared as numbers and newer than qualifiers; the
//! qualifiers `alpha` (`a`) < `beta` (`b`) < `milestone` (`m`) < `rc`
//! (`cr`) < `snapshot` < the release (``, `ga`, `final`, `release`) < `sp`
//! < any other (compared as text); trailing zeros and release qualifiers
//! ignored (`1.0.Final` = `1`).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Number(u128),
    Qualifier(u8, String),
}

fn rank(q: &str) -> u8 {
    match q {
        "alpha" | "a" => 0,
        "beta" | "b" => 1,
        "milestone" | "m" => 2,
        "rc" | "cr" => 3,
        "snapshot" => 4,
        "" | "ga" | "final" | "release" => 5,
        "sp" => 6,
        _ => 7,
    }
}

fn items(v: &str) -> Vec<Item> {
    let v = v.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut cur = String::new();
    let push = |cur: &mut String, out: &mut Vec<Item>| {
        if cur.is_empty() {
            return;
        }
        let item = match cur.parse::<u128>() {
            Ok(n) => Item::Number(n),
            Err(_) => Item::Qualifier(rank(cur), std::mem::take(cur)),
        };
        cur.clear();
        out.push(item);
    };
    for c in v.chars() {
        if matches!(c, '.' | '-' | '_' | '+') {
            push(&mut cur, &mut out);
            continue;
        }
        if let Some(last) = cur.chars().last() {
            if last.is_ascii_digit() != c.is_ascii_digit() {
                push(&mut cur, &mut out);
            }
        }
        cur.push(c);
    }
    push(&mut cur, &mut out);
    while matches!(
        out.last(),
        Some(Item::Number(0)) | Some(Item::Qualifier(5, _))
    ) {
        out.pop();
    }
    out
}

fn cmp_item(a: Option<&Item>, b: Option<&Item>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (Some(Item::Number(x)), Some(Item::Number(y))) => x.cmp(y),
        (Some(Item::Number(_)), Some(Item::Qualifier(..))) => Ordering::Greater,
        (Some(Item::Qualifier(..)), Some(Item::Number(_))) => Ordering::Less,
        (Some(Item::Number(x)), None) => x.cmp(&0),
        (None, Some(Item::Number(y))) => 0.cmp(y),
        (Some(Item::Qualifier(r, s)), Some(Item::Qualifier(q, t))) => {
            r.cmp(q)
                .then_with(|| if *r == 7 { s.cmp(t) } else { Ordering::Equal })
        }
        (Some(Item::Qualifier(r, _)), None) => r.cmp(&5),
        (None, Some(Item::Qualifier(q, _))) => 5.cmp(q),
    }
}

/// Compares two Maven versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (x, y) = (items(a), items(b));
    for i in 0..x.len().max(y.len()) {
        match cmp_item(x.get(i), y.get(i)) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maven_order() {
        let ordered = [
            "1.0-alpha1",
            "1.0-beta",
            "1.0-m2",
            "1.0-rc1",
            "1.0-SNAPSHOT",
            "1.0",
            "1.0-sp1",
            "1.0-whatever",
            "1.0.1",
            "1.1",
            "2.12.7",
            "2.12.7.1",
            "10.0",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(compare(w[1], w[0]), Ordering::Greater);
        }
        assert_eq!(compare("1.0", "1"), Ordering::Equal);
        assert_eq!(compare("1.0.Final", "1.0"), Ordering::Equal);
        assert_eq!(compare("5.3.27.RELEASE", "5.3.27"), Ordering::Equal);
    }
}
