//! Finding image references, with their line and column, in YAML documents
//! (docker-compose, Kubernetes, Helm values) and Dockerfiles.
//!
//! The scanners are line based on purpose: a YAML parser would lose the
//! positions a linter must report, and the shapes that hold images are few:
//! a scalar `image: postgres:16` (compose services, Kubernetes containers,
//! CI job images) and the Helm convention of a mapping with `registry`,
//! `repository`, `tag` and `digest` keys. Dockerfiles name images in `FROM`
//! and `COPY --from=`; `ARG` defaults declared before the first `FROM` are
//! substituted, stage names and `scratch` are not images. A line that
//! carries `berth-lint: ignore` is skipped.

/// Where a reference was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// 1-based line.
    pub line: usize,
    /// 1-based column of the reference's first character.
    pub column: usize,
    /// The reference as written (Helm parts joined).
    pub text: String,
    /// Whether the text is written verbatim on that line (so a fix can
    /// replace it in place); false for Helm mappings.
    pub verbatim: bool,
    /// Helm: the `tag` key exists but is empty (the chart's appVersion).
    pub tag_from_chart: bool,
}

const IGNORE: &str = "berth-lint: ignore";

/// Strips a YAML comment (a `#` at the start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    line
}

/// Splits `  - key: value` into (indent of key, key, value, column of value).
fn key_value(line: &str) -> Option<(usize, &str, &str, usize)> {
    let mut indent = line.len() - line.trim_start().len();
    let mut rest = &line[indent..];
    while let Some(r) = rest.strip_prefix("- ") {
        let extra = 2 + (r.len() - r.trim_start().len());
        indent += extra;
        rest = &line[indent..];
    }
    let colon = rest.find(':')?;
    let key = rest[..colon].trim().trim_matches(['"', '\'']);
    if key.is_empty() || key.contains(' ') {
        return None;
    }
    let after = &rest[colon + 1..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None; // `a:b` is a scalar, not a key
    }
    let value = after.trim();
    let value_col = indent + colon + 1 + (after.len() - after.trim_start().len()) + 1;
    Some((indent, key, value, value_col))
}

fn unquote(v: &str) -> (&str, usize) {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return (inner, 1);
        }
    }
    (v, 0)
}

/// References in a YAML document.
pub fn yaml(text: &str) -> Vec<Occurrence> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = strip_comment(raw);
        i += 1;
        let Some((indent, key, value, col)) = key_value(line) else {
            continue;
        };
        if key != "image" || raw.contains(IGNORE) {
            continue;
        }
        if !value.is_empty() {
            if value.starts_with(['{', '[', '|', '>', '&', '*']) {
                continue;
            }
            let (v, q) = unquote(value);
            out.push(Occurrence {
                line: i,
                column: col + q,
                text: v.to_owned(),
                verbatim: true,
                tag_from_chart: false,
            });
            continue;
        }
        // A Helm-style mapping: collect the children.
        let (mut registry, mut repository, mut tag, mut digest) = (None, None, None, None);
        let start = i;
        while i < lines.len() {
            let child = strip_comment(lines[i]);
            if child.trim().is_empty() {
                i += 1;
                continue;
            }
            let Some((ci, k, v, _)) = key_value(child) else {
                if child.len() - child.trim_start().len() <= indent {
                    break;
                }
                i += 1;
                continue;
            };
            if ci <= indent {
                break;
            }
            let v = unquote(v).0.to_owned();
            match k {
                "registry" => registry = Some(v),
                "repository" | "name" => repository = repository.or(Some(v)),
                "tag" => tag = Some(v),
                "digest" => digest = Some(v),
                _ => {}
            }
            i += 1;
        }
        let Some(repo) = repository.filter(|r| !r.is_empty()) else {
            continue;
        };
        let mut text = match registry.filter(|r| !r.is_empty()) {
            Some(r) => format!("{r}/{repo}"),
            None => repo,
        };
        let tag_from_chart = tag.as_deref() == Some("");
        if let Some(t) = tag.filter(|t| !t.is_empty()) {
            text = format!("{text}:{t}");
        }
        if let Some(d) = digest.filter(|d| !d.is_empty()) {
            text = format!("{text}@{d}");
        }
        out.push(Occurrence {
            line: start,
            column: indent + 1,
            text,
            verbatim: false,
            tag_from_chart,
        });
    }
    out
}

/// References in a Dockerfile.
pub fn dockerfile(text: &str) -> Vec<Occurrence> {
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut seen_from = false;
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let first = lines[i];
        // Join continuation lines; positions are reported on the first line.
        let mut joined = first.trim_end().to_owned();
        while joined.ends_with('\\') && i + 1 < lines.len() {
            joined.pop();
            i += 1;
            joined.push(' ');
            joined.push_str(lines[i].trim());
        }
        i += 1;
        let trimmed = joined.trim_start();
        if trimmed.starts_with('#') || first.contains(IGNORE) {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let Some(instr) = words.next() else { continue };
        let instr = instr.to_ascii_uppercase();
        let words: Vec<&str> = words.collect();
        match instr.as_str() {
            "ARG" if !seen_from => {
                for w in &words {
                    let (k, v) = w.split_once('=').unwrap_or((w, ""));
                    args.push((k.to_owned(), unquote(v).0.to_owned()));
                }
            }
            "FROM" => {
                seen_from = true;
                let mut rest = words.iter().skip_while(|w| w.starts_with("--"));
                let Some(image) = rest.next() else { continue };
                if let (Some(as_kw), Some(name)) = (rest.next(), rest.next()) {
                    if as_kw.eq_ignore_ascii_case("as") {
                        stages.push(name.to_ascii_lowercase());
                    }
                }
                push_image(&mut out, &args, &stages[..], first, lineno, image);
            }
            "COPY" | "ADD" => {
                for w in &words {
                    if let Some(src) = w.strip_prefix("--from=") {
                        if !src.bytes().all(|b| b.is_ascii_digit()) {
                            push_image(&mut out, &args, &stages[..], first, lineno, src);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn push_image(
    out: &mut Vec<Occurrence>,
    args: &[(String, String)],
    stages: &[String],
    line: &str,
    lineno: usize,
    image: &str,
) {
    let image_lc = image.to_ascii_lowercase();
    if image_lc == "scratch" || stages.contains(&image_lc) {
        return;
    }
    let mut text = image.to_owned();
    for (k, v) in args {
        if !v.is_empty() {
            text = text
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
    }
    let verbatim = text == image;
    let column = line.find(image).map_or(1, |c| c + 1);
    out.push(Occurrence {
        line: lineno,
        column,
        text,
        verbatim,
        tag_from_chart: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_and_helm_mappings() {
        let doc = "services:\n  db:\n    image: \"postgres:16\" # pinned\n  web:\n    image: nginx\n    x: 1\n\
                   containers:\n  - name: a\n    image: ghcr.io/o/a:1\n  - image: 'busybox'\n\
                   image:\n  registry: docker.io\n  repository: bitnami/redis\n  tag: \"\"\nother: 1\n\
                   # image: commented\n  image: skip # berth-lint: ignore\n";
        let got = yaml(doc);
        let texts: Vec<_> = got
            .iter()
            .map(|o| (o.line, o.column, o.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (3, 13, "postgres:16"),
                (5, 12, "nginx"),
                (9, 12, "ghcr.io/o/a:1"),
                (10, 13, "busybox"),
                (11, 1, "docker.io/bitnami/redis"),
            ]
        );
        assert!(got[4].tag_from_chart && !got[4].verbatim);
    }

    #[test]
    fn dockerfile_froms() {
        let df = "ARG PY=3.12\n# FROM commented\nFROM --platform=$BUILDPLATFORM python:${PY}-slim AS build\n\
                  RUN echo\nFROM build AS test\nFROM scratch\nfrom alpine\nCOPY --from=build /a /b\n\
                  COPY --from=ghcr.io/o/tools:1 /t /t\nCOPY --from=0 /x /x\nFROM \\\n  debian:12\n";
        let got: Vec<_> = dockerfile(df)
            .into_iter()
            .map(|o| (o.line, o.column, o.text, o.verbatim))
            .collect();
        assert_eq!(
            got,
            [
                (3, 32, "python:3.12-slim".to_owned(), false),
                (7, 6, "alpine".to_owned(), true),
                (9, 13, "ghcr.io/o/tools:1".to_owned(), true),
                (11, 1, "debian:12".to_owned(), true),
            ]
        );
    }
}
