//! `berth completions SHELL` and `berth man`: shell completions and man
//! pages generated from the clap definitions (`clap_complete`,
//! `clap_mangen`), so they list exactly the subcommands and flags the
//! binary has.

use std::path::PathBuf;

/// Print a shell completion script.
#[derive(Debug, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    berth completions bash > /etc/bash_completion.d/berth\n  \
    berth completions zsh > \"${fpath[1]}/_berth\"\n  \
    berth completions fish > ~/.config/fish/completions/berth.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print the man page (roff), or write one page per command into a directory.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Read it with `berth man | man -l -`, or install the pages:\n  \
    berth man --dir /usr/local/share/man/man1"
)]
pub struct ManArgs {
    /// Write berth.1 and a page per subcommand (berth-serve.1, berth-copy.1, ...) into this
    /// directory instead of printing berth.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<()> {
    clap_complete::generate(args.shell, &mut cmd, "berth", &mut std::io::stdout().lock());
    Ok(())
}

/// Writes the man page to stdout, or every page into `args.dir`.
pub fn man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<()> {
    match &args.dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| anyhow::anyhow!("writing man pages to {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}
