//! Progress reporting for blob transfers: bars on a terminal, one log line
//! per blob otherwise (CI logs), or nothing.

use std::io::IsTerminal as _;
use std::sync::Arc;

use berth_oci::Descriptor;

/// Receives copy events.
pub trait Progress: Send + Sync {
    /// A blob transfer starts.
    fn blob_started(&self, d: &Descriptor) -> Arc<dyn BlobProgress>;
    /// A blob needs no transfer (`exists`, `mounted`).
    fn blob_skipped(&self, d: &Descriptor, why: &str);
    /// A free-form status line.
    fn message(&self, msg: &str);
}

/// One blob's transfer.
pub trait BlobProgress: Send + Sync {
    /// `n` more bytes arrived.
    fn advance(&self, n: u64);
    /// The transfer completed.
    fn done(&self);
    /// The transfer failed.
    fn failed(&self);
}

/// Human-readable byte count.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn short(d: &Descriptor) -> String {
    let hex = d.digest.hex();
    format!(
        "{}:{}",
        d.digest.algorithm().as_str(),
        &hex[..hex.len().min(12)]
    )
}

/// Picks bars on a terminal, lines otherwise, nothing when `quiet`.
pub fn for_stderr(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars(indicatif::MultiProgress::with_draw_target(
            indicatif::ProgressDrawTarget::stderr(),
        )))
    } else {
        Arc::new(Lines)
    }
}

/// No output.
#[derive(Debug)]
pub struct Silent;

struct Nothing;

impl BlobProgress for Nothing {
    fn advance(&self, _: u64) {}
    fn done(&self) {}
    fn failed(&self) {}
}

impl Progress for Silent {
    fn blob_started(&self, _: &Descriptor) -> Arc<dyn BlobProgress> {
        Arc::new(Nothing)
    }
    fn blob_skipped(&self, _: &Descriptor, _: &str) {}
    fn message(&self, _: &str) {}
}

/// One line per event on stderr.
#[derive(Debug)]
pub struct Lines;

struct Line(String, u64);

impl BlobProgress for Line {
    fn advance(&self, _: u64) {}
    fn done(&self) {
        eprintln!("copied blob {} ({})", self.0, human(self.1));
    }
    fn failed(&self) {
        eprintln!("failed blob {}", self.0);
    }
}

impl Progress for Lines {
    fn blob_started(&self, d: &Descriptor) -> Arc<dyn BlobProgress> {
        eprintln!(
            "copying blob {} ({})",
            short(d),
            human(d.size.max(0) as u64)
        );
        Arc::new(Line(short(d), d.size.max(0) as u64))
    }
    fn blob_skipped(&self, d: &Descriptor, why: &str) {
        eprintln!("skipped blob {} ({why})", short(d));
    }
    fn message(&self, msg: &str) {
        eprintln!("{msg}");
    }
}

/// indicatif progress bars.
pub struct Bars(indicatif::MultiProgress);

impl std::fmt::Debug for Bars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bars")
    }
}

struct Bar(indicatif::ProgressBar);

impl BlobProgress for Bar {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn done(&self) {
        self.0.finish_with_message("done");
    }
    fn failed(&self) {
        self.0.abandon_with_message("failed");
    }
}

impl Progress for Bars {
    fn blob_started(&self, d: &Descriptor) -> Arc<dyn BlobProgress> {
        let bar = self
            .0
            .add(indicatif::ProgressBar::new(d.size.max(0) as u64));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(short(d));
        Arc::new(Bar(bar))
    }
    fn blob_skipped(&self, d: &Descriptor, why: &str) {
        let _ = self.0.println(format!("{} {why}", short(d)));
    }
    fn message(&self, msg: &str) {
        let _ = self.0.println(msg);
    }
}
