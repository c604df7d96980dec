//! Progress of a long operator command (`migrate`, `backup`, `restore`):
//! a bar on a terminal, one line per step otherwise (logs, CI).

/// A bar on a terminal (stderr), or plain lines.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    tool: &'static str,
}

impl Progress {
    /// Progress of `tool` (`berth migrate`, ...), which prefixes its lines.
    pub fn new(tool: &'static str) -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg:32} [{bar:30}] {pos}/{len} {elapsed}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b
        });
        Progress { bar, tool }
    }

    /// Whether a bar is shown (else lines are printed).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// A step of `total` items begins (`what` names them: "blobs").
    pub fn start(&self, what: &str, total: u64) {
        match &self.bar {
            Some(b) => {
                b.set_message(what.to_owned());
                b.set_length(total);
                b.set_position(0);
            }
            None => eprintln!("{}: {what}: {total} to go", self.tool),
        }
    }

    /// `n` items of the step are done.
    pub fn at(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n);
        }
    }

    /// Prints one line (above the bar, if any).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}: {text}", self.tool)),
            None => eprintln!("{}: {text}", self.tool),
        }
    }

    /// A step ended: `n` copied, `skipped` already there.
    pub fn done(&self, what: &str, n: u64, skipped: u64) {
        if skipped > 0 {
            self.line(&format!("{what}: {n} copied ({skipped} already there)"));
        } else {
            self.line(&format!("{what}: {n} copied"));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
