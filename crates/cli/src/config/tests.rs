#![allow(clippy::unwrap_used)]

use super::*;

/// Settings from `args` (as after `berth serve`) and an optional file.
fn resolve(args: &[&str], file: Option<&str>) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let mut argv: Vec<String> = vec!["serve".into()];
    if let Some(text) = file {
        let f = dir.path().join("berth.toml");
        std::fs::write(&f, text).unwrap();
        argv.push("--config".into());
        argv.push(f.display().to_string());
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    let command = serve_command().mut_args(|a| a.env(None));
    let matches = command.try_get_matches_from(argv)?;
    let parsed = <ServeArgs as FromArgMatches>::from_arg_matches(&matches)?;
    Settings::resolve(parsed, &matches)
}

fn serve_command() -> clap::Command {
    <ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"))
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = resolve(&[], None).unwrap();
    assert_eq!(s.listen.as_str(), "127.0.0.1:5000");
    assert_eq!(s.data_dir, PathBuf::from("berth-data"));
    assert_eq!(s.log_format, LogFormat::Text);
    assert_eq!(s.max_manifest_size, ByteSize(4 << 20));
    assert_eq!(s.upload_ttl, Span::secs(86_400));
    assert_eq!(s.pull_stats_flush_interval, Span::secs(30));
    assert_eq!(s.gc_schedule(), Some(Duration::from_secs(86_400)));
    assert_eq!(s.gc_grace_period, Span::secs(3600));
    let auth = s.auth_settings();
    assert_eq!(auth.mode, AuthMode::Token, "secure by default");
    assert_eq!(auth.default_visibility, Visibility::Private);
    assert!(auth.pull_limit.is_none());
    assert_eq!(auth.token_ttl, Duration::from_secs(300));
    assert!(s.admin_password.is_none());
    // The serde default is the clap default.
    let from_empty_file: Settings = toml::from_str("").unwrap();
    assert_eq!(
        serde_json::to_value(&from_empty_file).unwrap(),
        serde_json::to_value(&s).unwrap()
    );
}

#[test]
fn a_flag_beats_the_file_which_beats_the_default() {
    let file = "listen = \"127.0.0.1:6000\"\nlog_level = \"debug\"\nmax_manifest_size = \"1MiB\"\n\
                auth = \"none\"\npull_rate_limit = 100\ntoken_ttl = \"10m\"\n\
                trust_forwarded_for = true\nchunk_min_length = 1024\n";
    let s = resolve(
        &["--log-level", "warn", "--default-visibility", "public"],
        Some(file),
    )
    .unwrap();
    assert_eq!(s.listen.as_str(), "127.0.0.1:6000");
    assert_eq!(s.log_level, "warn");
    assert_eq!(s.max_manifest_size, ByteSize(1 << 20));
    assert_eq!(s.chunk_min_length, ByteSize(1024));
    assert!(s.trust_forwarded_for);
    let auth = s.auth_settings();
    assert_eq!(auth.mode, AuthMode::None);
    assert_eq!(auth.default_visibility, Visibility::Public);
    assert_eq!(
        auth.pull_limit,
        Some(RateLimit {
            limit: 100,
            window: Duration::from_secs(21_600)
        })
    );
    assert_eq!(auth.token_ttl, Duration::from_secs(600));
    // A flag given with its default value still beats the file.
    let s = resolve(&["--auth", "token"], Some("auth = \"none\"\n")).unwrap();
    assert_eq!(s.auth, AuthChoice::Token);
    // Every former file-only setting is a flag too.
    let s = resolve(&["--gc-interval", "0", "--gc-grace-period", "10m"], None).unwrap();
    assert_eq!(s.gc_schedule(), None, "0 turns the schedule off");
    assert_eq!(s.gc_grace_period, Span::secs(600));
}

#[test]
fn the_environment_sits_between_flags_and_the_file() {
    // The only test that sets this variable.
    std::env::set_var("BERTH_REFRESH_TOKEN_TTL", "2d");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("berth.toml");
    std::fs::write(&f, "refresh_token_ttl = \"3d\"\n").unwrap();
    let run = |extra: &[&str]| {
        let mut argv = vec!["serve", "--config", f.to_str().unwrap()];
        argv.extend(extra);
        let matches = serve_command().try_get_matches_from(argv).unwrap();
        let parsed = <ServeArgs as FromArgMatches>::from_arg_matches(&matches).unwrap();
        Settings::resolve(parsed, &matches).unwrap()
    };
    assert_eq!(run(&[]).refresh_token_ttl, Span::secs(2 * 86_400));
    assert_eq!(
        run(&["--refresh-token-ttl", "1d"]).refresh_token_ttl,
        Span::secs(86_400)
    );
    std::env::remove_var("BERTH_REFRESH_TOKEN_TTL");
}

#[test]
fn bad_values_name_the_setting() {
    for (file, want) in [
        ("unknown_key = 1\n", "unknown field `unknown_key`"),
        ("auth = \"maybe\"\n", "maybe"),
        ("default_visibility = \"secret\"\n", "secret"),
        ("gc_grace_period = \"soon\"\n", "gc_grace_period"),
        ("upload_ttl = \"90\"\n", "has no unit"),
        ("token_ttl = \"99999999999999999999w\"\n", "too long"),
        (
            "pull_stats_flush_interval = \"0s\"\n",
            "pull_stats_flush_interval must be greater than zero",
        ),
        ("max_manifest_size = 10\n", "at least 1KiB"),
        ("max_manifest_size = \"4XB\"\n", "invalid size unit"),
        ("listen = \"5000\"\n", "expected HOST:PORT"),
        (
            "external_url = \"registry.example.com\"\n",
            "invalid external_url",
        ),
        ("token_service = \"a,b\"\n", "invalid token_service"),
        ("log_level = \"berth=loud\"\n", "invalid log_level"),
    ] {
        let e = format!("{:#}", resolve(&[], Some(file)).unwrap_err());
        assert!(e.contains(want), "{file}: {e}");
    }
    let e = resolve(&["--upload-ttl", "1y"], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--upload-ttl"), "{e}");
}

#[test]
fn listen_takes_names_and_addresses() {
    for ok in [
        "localhost:5097",
        "127.0.0.1:0",
        "0.0.0.0:5000",
        "[::1]:5000",
        "registry.internal:80",
    ] {
        assert_eq!(ok.parse::<Listen>().unwrap().as_str(), ok);
    }
    for bad in [
        "localhost",
        ":5000",
        "localhost:99999",
        "::1:5000",
        "a b:1",
        "[zz]:1",
    ] {
        assert!(bad.parse::<Listen>().is_err(), "{bad}");
    }
}

#[test]
fn secrets_are_never_printed() {
    let s = resolve(&["--admin-password", "hunter2-but-longer"], None).unwrap();
    assert_eq!(
        s.admin_password.as_ref().unwrap().expose(),
        "hunter2-but-longer"
    );
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let mut help = Vec::new();
    serve_command().write_long_help(&mut help).unwrap();
    assert!(String::from_utf8(help)
        .unwrap()
        .contains("--admin-password"));
}

/// One row of the README's configuration table.
#[derive(Debug)]
struct Row {
    flag: String,
    env: String,
    key: String,
    default: String,
}

fn readme_rows() -> Vec<Row> {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let cell = |c: &str| c.trim().trim_matches('`').to_owned();
    section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            assert!(cells.len() >= 5, "README row with too few cells: {l}");
            Row {
                flag: cell(cells[0])
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                env: cell(cells[1]),
                key: cell(cells[2]),
                default: cell(cells[3]),
            }
        })
        .collect()
}

/// The README's configuration table lists every setting of `berth serve`
/// (flag, variable, TOML key and default) and nothing else.
#[test]
fn the_readme_lists_every_setting() {
    let rows = readme_rows();
    let command = serve_command();
    let mut missing = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        assert!(!arg.is_hide_set(), "--{long} is hidden from --help");
        assert!(arg.get_help().is_some(), "--{long} has no help text");
        let env = arg
            .get_env()
            .and_then(|e| e.to_str())
            .map(str::to_owned)
            .unwrap_or_default();
        assert_eq!(
            env,
            format!("BERTH_{}", arg.get_id().as_str().to_uppercase())
        );
        let key = if arg.get_id() == "config" {
            "–".to_owned()
        } else {
            arg.get_id().to_string()
        };
        let Some(row) = rows.iter().find(|r| r.flag == format!("--{long}")) else {
            missing.push(format!("--{long}"));
            continue;
        };
        assert_eq!(row.env, env, "README row of --{long}");
        assert_eq!(row.key, key, "README row of --{long}");
        if let Some(default) = arg.get_default_values().first() {
            assert_eq!(
                row.default,
                default.to_string_lossy(),
                "README default of --{long}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "the README's configuration table misses {missing:?}"
    );
    for row in &rows {
        assert!(
            command
                .get_arguments()
                .any(|a| a.get_long().is_some_and(|l| format!("--{l}") == row.flag)),
            "the README lists {} but berth serve has no such setting",
            row.flag
        );
    }
}

#[test]
fn the_database_password_is_never_printed() {
    let url = "postgres://berth:pg-hunter2@db.internal:5432/berth";
    let s = resolve(&["--database-url", url], None).unwrap();
    assert_eq!(s.database().expose(), url);
    assert!(s.database().is_postgres());
    let shown = format!("{s:?} {}", s.database());
    assert!(!shown.contains("pg-hunter2"), "{shown}");
    assert!(shown.contains("postgres://berth:***@db.internal:5432/berth"));
    // Refused engines are named without the password.
    let e = resolve(&["--database-url", "mysql://root:pg-hunter2@h/db"], None).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("invalid database_url") && !e.contains("pg-hunter2"),
        "{e}"
    );
    // The default is SQLite in the data directory.
    let s = resolve(&["--data-dir", "/srv/berth"], None).unwrap();
    assert_eq!(
        s.database().expose(),
        "sqlite:///srv/berth/berth.db?mode=rwc"
    );
    assert!(!s.database().is_postgres());
    assert!(s.auth_settings().shared_database == s.database().is_postgres());
    let s = resolve(&[], Some("database_url = \"sqlite:///tmp/x.db\"\ndatabase_pool_size = 4\ndatabase_statement_timeout = \"0\"")).unwrap();
    assert_eq!(s.pool_options().max_connections, 4);
    assert_eq!(s.pool_options().statement_timeout, None);
}

#[test]
fn metrics_settings_are_checked_together() {
    let s = resolve(&["--metrics-listen", "127.0.0.1:9100"], None).unwrap();
    let o = s.observe();
    assert!(o.metrics && !o.metrics_route && o.access_log);
    let err = resolve(&["--metrics-token", "has space"], None).unwrap_err();
    assert!(format!("{err:#}").contains("metrics_token"), "{err:#}");
    let err = resolve(&["--metrics", "false", "--metrics-token", "t"], None).unwrap_err();
    assert!(
        format!("{err:#}").contains("need metrics = true"),
        "{err:#}"
    );
    let s = resolve(&[], Some("metrics = false\naccess_log = false\n")).unwrap();
    let o = s.observe();
    assert!(!o.watching() && !o.metrics_route);
}

#[test]
fn the_s3_flags_are_one_struct_for_serve_and_migrate() {
    // `berth serve`: from the file, a flag beating it.
    let file = "storage = \"s3://b/p\"\ns3_endpoint = \"http://127.0.0.1:9000\"\n\
                s3_region = \"eu-west-1\"\ns3_path_style = true\n";
    let s = resolve(&["--s3-region", "us-east-2"], Some(file)).unwrap();
    let o = s.s3_options();
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(o.region.as_deref(), Some("us-east-2"));
    assert!(o.path_style);
    assert!(!o.redirect);
    let e = resolve(&[], Some("s3_endpoint = 5\n")).unwrap_err();
    assert!(format!("{e:#}").contains("s3_endpoint"), "{e:#}");
    // `berth migrate` takes the very same flags.
    let migrate = <crate::migrate::Args as clap::Args>::augment_args(clap::Command::new("migrate"))
        .mut_args(|a| a.env(None));
    let m = migrate
        .try_get_matches_from([
            "migrate",
            "--to-database-url",
            "postgres://u@h/db",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-path-style",
        ])
        .unwrap();
    let args = <crate::migrate::Args as FromArgMatches>::from_arg_matches(&m).unwrap();
    let o = args.s3.options();
    assert_eq!(o.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(o.path_style);
}
