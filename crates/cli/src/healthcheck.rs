//! `berth healthcheck`: asks the `berth serve` of this machine whether it is
//! alive (`/livez`) or ready (`/readyz`), and exits 0 or 1. It is the
//! container image's `HEALTHCHECK` (the runtime image has no shell and no
//! curl) and can be a Kubernetes exec probe or a systemd watchdog.
//!
//! It reads the same settings as `berth serve` (flags, `BERTH_*`
//! variables, `BERTH_CONFIG`'s file), so it asks the listener that serve
//! opened: the metrics listener when there is one (it alone serves the
//! health endpoints then), else the main one, at the address in
//! `addr_file` when serve listens on port 0. A listener on every interface
//! (`0.0.0.0`, `[::]`) is asked on loopback. On an HTTPS main listener the
//! probe of a loopback address does not check the certificate (which names
//! the public host): it sends nothing secret and only asks whether the
//! server on this machine answers.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use berth_oci::Span;
use clap::ArgMatches;

use crate::config::{ServeArgs, Settings};

/// `berth healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ask `/readyz` (database and storage answer) instead of `/livez`
    /// (the process answers).
    #[arg(long)]
    pub ready: bool,
    /// Ask this URL instead of the one the settings give (e.g.
    /// `http://127.0.0.1:9090/livez`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this long.
    #[arg(long = "probe-timeout", default_value = "5s", value_name = "DURATION")]
    pub probe_timeout: Span,
    /// The settings `berth serve` runs with (flags, environment, file).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Asks the server; `Ok` when it answered 2xx.
pub async fn run(args: Args, matches: &ArgMatches) -> anyhow::Result<()> {
    let (url, loopback) = match &args.url {
        Some(url) => (url.clone(), false),
        None => {
            let settings = Settings::resolve(args.serve.clone(), matches)?;
            probe_url(&settings, args.ready)?
        }
    };
    let http = reqwest::Client::builder()
        .timeout(args.probe_timeout.get())
        .connect_timeout(args.probe_timeout.get().min(Duration::from_secs(5)))
        .danger_accept_invalid_certs(loopback)
        .user_agent(concat!("berth-healthcheck/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url} does not answer (is `berth serve` running?)"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {}", body.trim());
    }
    println!("{url}: {status} {}", body.trim());
    Ok(())
}

/// The health URL of the listener `settings` describe, and whether it is a
/// loopback address.
fn probe_url(settings: &Settings, ready: bool) -> anyhow::Result<(String, bool)> {
    let path = if ready { "/readyz" } else { "/livez" };
    let (listen, scheme) = match &settings.metrics_listen {
        Some(at) => (at.as_str().to_owned(), "http"),
        None => {
            let scheme = if settings.tls_files().is_some() {
                "https"
            } else {
                "http"
            };
            (settings.listen.as_str().to_owned(), scheme)
        }
    };
    let (host, port) = listen
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("invalid listen address {listen:?}"))?;
    let port = match (port, &settings.addr_file) {
        // Port 0: the one serve got, which it wrote to addr_file (for the
        // main listener only).
        ("0", Some(file)) if settings.metrics_listen.is_none() => {
            let bound = std::fs::read_to_string(file).with_context(|| {
                format!(
                    "reading {} (addr_file: serve writes it once listening)",
                    file.display()
                )
            })?;
            bound
                .trim()
                .rsplit_once(':')
                .map(|(_, p)| p.to_owned())
                .ok_or_else(|| anyhow!("{} holds no HOST:PORT", file.display()))?
        }
        ("0", _) => bail!(
            "serve listens on {listen} (any free port) and there is no addr_file saying which: \
             set addr_file, or give the URL with --url"
        ),
        (p, _) => p.to_owned(),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let (host, loopback) = match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => ("127.0.0.1".to_owned(), true),
        Ok(ip) if ip.is_unspecified() => ("[::1]".to_owned(), true),
        Ok(ip) => (host.to_owned(), ip.is_loopback()),
        Err(_) => (host.to_owned(), bare == "localhost"),
    };
    Ok((format!("{scheme}://{host}:{port}{path}"), loopback))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn url(argv: &[&str]) -> anyhow::Result<(String, bool)> {
        let mut full = vec!["berth"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full)?;
        probe_url(&cli.args.serve.settings, cli.args.ready)
    }

    #[test]
    fn the_probe_asks_the_listener_serve_opens() {
        assert_eq!(
            url(&["--listen", "0.0.0.0:5000"]).unwrap(),
            ("http://127.0.0.1:5000/livez".to_owned(), true)
        );
        assert_eq!(
            url(&["--listen", "[::]:8080", "--ready"]).unwrap(),
            ("http://[::1]:8080/readyz".to_owned(), true)
        );
        assert_eq!(
            url(&["--listen", "registry.example:443"]).unwrap(),
            ("http://registry.example:443/livez".to_owned(), false)
        );
        // The metrics listener serves the health endpoints alone, in plain
        // HTTP even when the main listener is HTTPS.
        assert_eq!(
            url(&[
                "--listen",
                "0.0.0.0:5000",
                "--metrics-listen",
                "127.0.0.1:9090",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem"
            ])
            .unwrap(),
            ("http://127.0.0.1:9090/livez".to_owned(), true)
        );
        assert_eq!(
            url(&[
                "--listen",
                "0.0.0.0:5443",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem"
            ])
            .unwrap(),
            ("https://127.0.0.1:5443/livez".to_owned(), true)
        );
    }

    #[test]
    fn port_zero_is_read_from_the_address_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("addr");
        let file_arg = file.display().to_string();
        let err = url(&["--listen", "0.0.0.0:0"]).unwrap_err().to_string();
        assert!(err.contains("addr_file"), "{err}");
        let err = url(&["--listen", "0.0.0.0:0", "--addr-file", &file_arg])
            .unwrap_err()
            .to_string();
        assert!(err.contains("serve writes it once listening"), "{err}");
        std::fs::write(&file, "0.0.0.0:41234").unwrap();
        assert_eq!(
            url(&["--listen", "0.0.0.0:0", "--addr-file", &file_arg]).unwrap(),
            ("http://127.0.0.1:41234/livez".to_owned(), true)
        );
    }
}
