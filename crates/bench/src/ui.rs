//! `berth bench --scenarios ui-tags`: the web UI's server time for a
//! repository of many tags (`--tags`, 10,000 by default), berth alone (the
//! reference registry has no UI to compare with).
//!
//! One berth with authentication on; an organisation `bench` holding a
//! repository `bench/ui` of `--tags` image manifests, each its own, under
//! tags `v00000`, `v00001`, ..., and a retention policy keeping the ten
//! newest tags (so its plan deletes all the others); an SPDX SBOM of
//! 1,500 packages attached to `v00000` (a referrer, as `oras attach`
//! pushes it); a session opened
//! through the sign-in form. Then every page of the UI is fetched once to
//! warm up and then `--rounds` times (20 by default, 3 with `--quick`) one
//! after the other on one keep-alive connection over loopback: the tag
//! table's first, middle and last page, sorted by push time and by size,
//! filtered to ten tags; an image; the image with the SBOM (its package
//! list read from the document on every request); the start page and its search; the
//! namespace; its rules page with the stored policy's plan; the plan
//! preview the policy editor posts as it is typed; both again with a new
//! image pushed (untimed) before each request, so that the repository is
//! read afresh rather than found kept from the last request; the rules
//! page with a tag pulled before each request (the page's plan flushes the
//! pull count first); the organisation; the
//! tokens; the users, the organisations, the storage overview and the audit log (admin
//! pages); and the sign-in form. The report gives the median, 90th
//! percentile and worst response time of each, and the server's CPU time
//! per request (`/proc` deltas). On loopback with one request at a time
//! the response time is the server time plus well under a millisecond.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde::Serialize;

use crate::client::{collect, drain, expect, Conn, Payload};
use crate::payload::Blob;
use crate::server::{BerthSpec, Kind, Observe, Server};
use crate::{ops, BenchArgs, MetadataKind, Output};

/// The UI scenarios (`--scenarios ui-tags`).
pub const SCENARIOS: [&str; 1] = ["ui-tags"];
/// The repository the scenario fills.
const REPO: &str = "bench/ui";
/// Tag rows on a page of the tag table (the UI's page size).
const PER_PAGE: usize = 50;

/// Whether `--scenarios` asks for the UI scenarios (which run alone).
pub fn requested(args: &BenchArgs) -> bool {
    args.scenarios.iter().any(|s| s.starts_with("ui"))
}

/// One page's measurements.
#[derive(Debug, Serialize)]
pub struct PageTime {
    /// What the page is.
    pub page: String,
    /// Its path.
    pub path: String,
    /// Requests measured.
    pub requests: usize,
    /// Median response time (ms).
    pub median_ms: f64,
    /// 90th percentile (ms).
    pub p90_ms: f64,
    /// Worst (ms).
    pub max_ms: f64,
    /// berth's CPU time per request (ms).
    pub server_cpu_ms: f64,
    /// Bytes of HTML.
    pub bytes: u64,
}

/// The report of the UI scenario.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `ui-tags`.
    pub scenario: &'static str,
    /// Tags in the repository.
    pub tags: usize,
    /// Where berth kept its metadata.
    pub metadata: MetadataKind,
    /// Seconds seeding took.
    pub seed_s: f64,
    /// One row per page.
    pub pages: Vec<PageTime>,
}

/// Runs the UI scenario as `args` say and prints its report.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(other) = args
        .scenarios
        .iter()
        .find(|s| !SCENARIOS.iter().any(|u| u.starts_with(s.as_str())))
    {
        bail!(
            "{other:?} is not a UI scenario: the UI scenarios ({}) measure berth alone and run on their own; run the others in a separate `berth bench`",
            SCENARIOS.join(", ")
        );
    }
    let bin = match &args.berth_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating the berth executable")?,
    };
    let tags = args.tags.unwrap_or(if args.quick { 500 } else { 10_000 });
    anyhow::ensure!(tags >= 1, "--tags must be at least 1");
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 20 });
    anyhow::ensure!(
        (1..=1000).contains(&rounds),
        "--rounds must be between 1 and 1000"
    );
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a work directory in {}", parent.display()))?;
    // On PostgreSQL: a cluster of the bench's own, for the run.
    let database = match args.metadata {
        MetadataKind::Sqlite => None,
        MetadataKind::Postgres => Some(crate::database::Database::start()?),
    };
    let url = database.as_ref().map(|db| db.create("berth_ui"));
    let mut report = measure(&bin, work.path(), tags, rounds, url.as_deref()).await?;
    report.metadata = args.metadata;
    let text = match args.output {
        Output::Table => report.table(),
        Output::Markdown => report.markdown(),
        Output::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    Ok(())
}

/// The retention policy of the namespace: keep the ten newest tags.
const POLICY: &str = "[[rule]]\nname = \"keep-last-10\"\ntags = [\"*\"]\nkeep = { last = 10 }\n";

/// One page to measure: what it is, how it is asked for.
struct Probe {
    page: &'static str,
    method: Method,
    path: String,
    /// A form body (`application/x-www-form-urlencoded`), for a POST.
    form: Option<String>,
    /// Sent with the session cookie.
    signed_in: bool,
    /// Text the page must hold (checked on every answer).
    must_hold: Option<&'static str>,
    /// What is done to the repository before each request, untimed.
    before: Before,
}

/// What a probe does to the repository before each request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Nothing: the page finds the repository's inventory kept from its
    /// last request.
    Nothing,
    /// A new image pushed under a new tag: the page reads the repository
    /// afresh, what it costs the first time after a change.
    Push,
    /// A tag pulled: the page's plan first flushes the pull count, which
    /// is counted into the kept inventory.
    Pull,
}

impl Probe {
    fn get(page: &'static str, path: impl Into<String>) -> Probe {
        Probe {
            page,
            method: Method::GET,
            path: path.into(),
            form: None,
            signed_in: true,
            must_hold: None,
            before: Before::Nothing,
        }
    }
}

async fn measure(
    bin: &Path,
    work: &Path,
    tags: usize,
    rounds: usize,
    database_url: Option<&str>,
) -> anyhow::Result<Report> {
    let mut server = Server::berth(
        BerthSpec {
            bin,
            kind: Kind::Berth,
            auth: true,
            tls: None,
            s3: None,
            observe: Observe::Defaults,
            database_url,
            replicas: 1,
            callgrind: None,
        },
        &work.join("berth-ui-tags"),
    )?;
    // The namespace is an organisation (its page lists the members; it
    // has an organisation page), created with the admin's password.
    let mut admin = server.conn();
    let resp = admin
        .send(
            Method::POST,
            "/api/v1/orgs",
            &[(header::CONTENT_TYPE, "application/json")],
            Payload::new(vec![Bytes::from_static(br#"{"name":"bench"}"#)]),
        )
        .await?;
    drain(expect(resp, StatusCode::CREATED, "creating the organisation bench").await?).await?;
    // A registry token: seeding from 16 connections with the password
    // would verify it (slowly, throttled) until the login cache holds it.
    let scopes = [format!("repository:{REPO}:pull,push")];
    let token = ops::fetch_token(&mut server.conn(), &scopes).await?;
    server.authorization = Some(format!("Bearer {token}"));
    let t = Instant::now();
    seed(&server, tags)
        .await
        .context("seeding the repository")?;
    attach_sbom(&server, SBOM_PACKAGES)
        .await
        .context("attaching an SBOM to v00000")?;
    let seed_s = t.elapsed().as_secs_f64();
    eprintln!("bench: ui-tags: {tags} tags seeded in {seed_s:.1}s");
    let resp = admin
        .send(
            Method::PUT,
            "/api/v1/namespaces/bench/retention",
            &[(header::CONTENT_TYPE, "application/toml")],
            Payload::new(vec![Bytes::from_static(POLICY.as_bytes())]),
        )
        .await?;
    drain(expect(resp, StatusCode::OK, "storing the retention policy").await?).await?;
    let cookie = sign_in(&server).await.context("signing in to the UI")?;
    let mut conn = server.conn().with_authorization(None);
    let csrf = form_secret(&mut conn, &cookie)
        .await
        .context("reading the session's form secret")?;
    let pages = tags.div_ceil(PER_PAGE);
    let last = format!("v{:05}", tags - 1);
    // At most ten tags share the last tag's name but its last digit.
    let filter = &last[..last.len() - 1];
    let probes = [
        Probe::get("tags, first page", format!("/ui/repo/{REPO}")),
        Probe::get(
            "tags, middle page",
            format!("/ui/repo/{REPO}?page={}", pages.div_ceil(2)),
        ),
        Probe::get("tags, last page", format!("/ui/repo/{REPO}?page={pages}")),
        Probe::get("tags, newest first", format!("/ui/repo/{REPO}?sort=pushed")),
        Probe::get("tags, largest first", format!("/ui/repo/{REPO}?sort=size")),
        Probe::get(
            "tags, filtered to ten",
            format!("/ui/repo/{REPO}?q={filter}"),
        ),
        Probe::get("an image", format!("/ui/repo/{REPO}:{last}")),
        Probe {
            must_hold: Some("1500 packages"),
            ..Probe::get(
                "an image with a 1,500-package SBOM",
                format!("/ui/repo/{REPO}:v00000"),
            )
        },
        Probe::get("start page", "/ui/"),
        Probe::get("start page, search", "/ui/?q=bench"),
        Probe::get("namespace", "/ui/ns/bench"),
        Probe::get("namespace rules", "/ui/ns/bench/settings"),
        Probe {
            page: "rules, plan preview",
            method: Method::POST,
            path: "/ui/ns/bench/retention/preview".to_owned(),
            form: Some(format!("csrf={csrf}&policy={}", form_encode(POLICY))),
            signed_in: true,
            must_hold: None,
            before: Before::Nothing,
        },
        Probe {
            before: Before::Push,
            ..Probe::get("namespace rules, after a push", "/ui/ns/bench/settings")
        },
        Probe {
            before: Before::Push,
            page: "rules, plan preview, after a push",
            method: Method::POST,
            path: "/ui/ns/bench/retention/preview".to_owned(),
            form: Some(format!("csrf={csrf}&policy={}", form_encode(POLICY))),
            ..Probe::get("", "")
        },
        Probe {
            before: Before::Pull,
            ..Probe::get("namespace rules, after a pull", "/ui/ns/bench/settings")
        },
        Probe::get("organisation", "/ui/org/bench"),
        Probe::get("tokens", "/ui/tokens"),
        Probe::get("users", "/ui/admin/users"),
        Probe::get("organisations", "/ui/admin/orgs"),
        Probe::get("storage", "/ui/admin/usage"),
        Probe::get("audit log", "/ui/admin/audit"),
        Probe {
            signed_in: false,
            ..Probe::get("sign-in form", "/ui/login")
        },
    ];
    let mut pusher = Pusher {
        conn: server.conn(),
        blobs: seed_blobs(),
        next: tags as u64,
    };
    let mut out = Vec::new();
    for probe in probes {
        pusher.before(probe.before).await?;
        let bytes = fetch(&mut conn, &probe, &cookie).await?;
        let mut cpu = 0.0;
        let mut us: Vec<u32> = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            pusher.before(probe.before).await?;
            let cpu_before = server.cpu_seconds()?;
            let t = Instant::now();
            fetch(&mut conn, &probe, &cookie).await?;
            us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            cpu += server.cpu_seconds()? - cpu_before;
        }
        us.sort_unstable();
        let path = match probe.method {
            Method::GET => probe.path,
            ref m => format!("{m} {}", probe.path),
        };
        let row = PageTime {
            page: probe.page.to_owned(),
            path,
            requests: rounds,
            median_ms: crate::load::quantile_ms(&us, 0.5),
            p90_ms: crate::load::quantile_ms(&us, 0.9),
            max_ms: crate::load::quantile_ms(&us, 1.0),
            server_cpu_ms: cpu * 1000.0 / rounds as f64,
            bytes,
        };
        eprintln!(
            "bench: ui-tags: {}: median {:.1} ms, p90 {:.1} ms",
            row.page, row.median_ms, row.p90_ms
        );
        out.push(row);
    }
    drop(server);
    Ok(Report {
        scenario: SCENARIOS[0],
        tags,
        metadata: MetadataKind::Sqlite,
        seed_s,
        pages: out,
    })
}

/// `probe` answered 200 with HTML; its length.
async fn fetch(conn: &mut Conn, probe: &Probe, cookie: &str) -> anyhow::Result<u64> {
    let mut headers = Vec::new();
    if probe.signed_in {
        headers.push((header::COOKIE, cookie));
    }
    let body = match &probe.form {
        Some(form) => {
            headers.push((header::CONTENT_TYPE, "application/x-www-form-urlencoded"));
            Payload::new(vec![Bytes::from(form.clone())])
        }
        None => Payload::default(),
    };
    let resp = conn
        .send(probe.method.clone(), &probe.path, &headers, body)
        .await?;
    let status = resp.status();
    let body = collect(resp).await?;
    if status != StatusCode::OK {
        bail!(
            "{} {} answered {status}: {}",
            probe.method,
            probe.path,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    if let Some(text) = probe.must_hold {
        anyhow::ensure!(
            body.windows(text.len()).any(|w| w == text.as_bytes()),
            "{} {} does not show {text:?}",
            probe.method,
            probe.path
        );
    }
    Ok(body.len() as u64)
}

/// The session's CSRF secret, as the forms of the start page carry it.
async fn form_secret(conn: &mut Conn, cookie: &str) -> anyhow::Result<String> {
    let resp = conn
        .send(
            Method::GET,
            "/ui/tokens",
            &[(header::COOKIE, cookie)],
            Payload::default(),
        )
        .await?;
    let html = collect(expect(resp, StatusCode::OK, "GET /ui/tokens").await?).await?;
    let html = String::from_utf8_lossy(&html);
    let at = html
        .find(r#"name="csrf" value=""#)
        .context("no form with a csrf field on /ui/tokens")?;
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    Ok(rest[..rest.find('"').unwrap_or(0)].to_owned())
}

/// `text` as a form field's value (`application/x-www-form-urlencoded`).
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Opens a UI session as the site admin; the `Cookie` value to send.
async fn sign_in(server: &Server) -> anyhow::Result<String> {
    // The form's double-submit value: the cookie and the field agree.
    let token = "bench-sign-in-form-token-0123456789";
    let body = format!(
        "login={token}&next=%2Fui%2F&username=admin&password={}",
        crate::server::BENCH_ADMIN_PASSWORD
    );
    let cookie = format!("berth_login={token}");
    let mut conn = server.conn().with_authorization(None);
    let resp = conn
        .send(
            Method::POST,
            "/ui/login",
            &[
                (header::COOKIE, cookie.as_str()),
                (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            ],
            Payload::new(vec![Bytes::from(body)]),
        )
        .await?;
    let status = resp.status();
    let session = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            pair.starts_with("berth_session=").then(|| pair.to_owned())
        });
    drain(resp).await?;
    match session {
        Some(s) if status == StatusCode::SEE_OTHER => Ok(s),
        _ => bail!("POST /ui/login answered {status} without a session cookie"),
    }
}

/// Packages of the SBOM attached to `v00000`.
const SBOM_PACKAGES: usize = 1500;

/// The config and the layer every seeded image shares.
fn seed_blobs() -> (Blob, Blob) {
    (
        Blob::from_bytes(Bytes::from_static(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"berth bench"}]}"#,
        )),
        Blob::from_bytes(Bytes::from_static(
            b"berth bench: a layer of the UI scenario",
        )),
    )
}

/// Attaches an SPDX 2.3 SBOM of `packages` packages to `v00000`, as
/// `oras attach` does: the empty config, the document as the one layer,
/// `subject` the image. The image page reads and lists it.
async fn attach_sbom(server: &Server, packages: usize) -> anyhow::Result<()> {
    let (config, layer) = seed_blobs();
    let image = ops::manifest((&config.digest, config.len), (&layer.digest, layer.len), 0);
    let doc = Blob::from_bytes(Bytes::from(berth_testkit::spdx_document(
        packages, "package",
    )));
    let empty = Blob::from_bytes(Bytes::from_static(b"{}"));
    let mut conn = server.conn();
    ops::push_monolithic(&mut conn, REPO, &empty).await?;
    ops::push_monolithic(&mut conn, REPO, &doc).await?;
    let referrer = Bytes::from(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.digest, "size": empty.len},
        "layers": [{"mediaType": "application/spdx+json", "digest": doc.digest, "size": doc.len}],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": crate::payload::digest_of(&image),
            "size": image.len(),
        },
    }))?);
    let digest = crate::payload::digest_of(&referrer);
    ops::put_manifest(&mut conn, REPO, &digest, &referrer).await?;
    Ok(())
}

/// Pushes `count` image manifests, each its own, under `v00000`, ...,
/// from 16 connections.
/// Pushes one more image under a new tag (`p00000`, ...), or pulls a
/// tag, for the pages measured after a change.
struct Pusher {
    conn: Conn,
    blobs: (Blob, Blob),
    next: u64,
}

impl Pusher {
    async fn before(&mut self, what: Before) -> anyhow::Result<()> {
        match what {
            Before::Nothing => Ok(()),
            Before::Push => self.push().await,
            Before::Pull => ops::get_manifest(&mut self.conn, REPO, "v00001", false)
                .await
                .map(drop),
        }
    }

    async fn push(&mut self) -> anyhow::Result<()> {
        let (config, layer) = &self.blobs;
        let m = ops::manifest(
            (&config.digest, config.len),
            (&layer.digest, layer.len),
            self.next,
        );
        let tag = format!("p{:05}", self.next);
        self.next += 1;
        ops::put_manifest(&mut self.conn, REPO, &tag, &m)
            .await
            .map(drop)
    }
}

async fn seed(server: &Server, count: usize) -> anyhow::Result<()> {
    let (config, layer) = seed_blobs();
    let mut conn = server.conn();
    ops::push_monolithic(&mut conn, REPO, &config).await?;
    ops::push_monolithic(&mut conn, REPO, &layer).await?;
    let config = Arc::new((config.digest, config.len));
    let layer = Arc::new((layer.digest, layer.len));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (mut c, next) = (server.conn(), next.clone());
        let (config, layer) = (config.clone(), layer.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count as u64 {
                    return anyhow::Ok(());
                }
                let m = ops::manifest((&config.0, config.1), (&layer.0, layer.1), i);
                ops::put_manifest(&mut c, REPO, &format!("v{i:05}"), &m).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

impl Report {
    /// An aligned text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "ui-tags: {} tags (seeded in {:.0}s), metadata on {}; response times over loopback, one request at a time\n\n",
            self.tags, self.seed_s, self.metadata.name()
        );
        out.push_str(&format!(
            "{:<24} {:>10} {:>10} {:>10} {:>12} {:>9}\n",
            "page", "median ms", "p90 ms", "max ms", "cpu ms/req", "kB"
        ));
        for p in &self.pages {
            out.push_str(&format!(
                "{:<24} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>9.0}\n",
                p.page,
                p.median_ms,
                p.p90_ms,
                p.max_ms,
                p.server_cpu_ms,
                p.bytes as f64 / 1000.0
            ));
        }
        out
    }

    /// Markdown, as `docs/benchmarks.md` shows it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Web UI, a repository of {} tags, metadata on {} (`berth bench --scenarios ui-tags`): response time over loopback, one request at a time, signed in.\n\n",
            self.tags,
            self.metadata.name()
        );
        out.push_str("| page | median | p90 | max | server CPU per request |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
        for p in &self.pages {
            out.push_str(&format!(
                "| {} (`{}`) | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                p.page, p.path, p.median_ms, p.p90_ms, p.max_ms, p.server_cpu_ms
            ));
        }
        out
    }
}
