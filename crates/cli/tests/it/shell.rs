//! `berth completions` and `berth man`: generated from the clap
//! definitions, accepted by the shells, and listing the real commands.

use std::process::Command;

use crate::common::have;
use crate::tools::berth_ok;

#[test]
fn bash_accepts_the_completion_script_and_completes_subcommands() {
    assert!(have("bash"), "bash is needed for this test");
    let dir = tempfile::tempdir().unwrap();
    let script = berth_ok(dir.path(), &["completions", "bash"]);
    let path = dir.path().join("berth.bash");
    std::fs::write(&path, &script).unwrap();
    // Sourcing it registers the completion; asking it for `berth co`
    // offers the subcommands that start so.
    let probe = format!(
        "source {} || exit 3; complete -p berth || exit 4; \
         COMP_WORDS=(berth co); COMP_CWORD=1; COMP_LINE='berth co'; COMP_POINT=8; \
         _berth berth co berth; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "bash refused the script: {stderr}");
    assert!(stdout.contains("-F _berth berth"), "{stdout}");
    let offered: Vec<&str> = stdout.lines().skip(1).collect();
    for want in ["copy", "completions"] {
        assert!(offered.contains(&want), "{want} not offered: {offered:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_and_the_man_pages_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let zsh = berth_ok(dir.path(), &["completions", "zsh"]);
    assert!(
        zsh.starts_with("#compdef berth"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    let fish = berth_ok(dir.path(), &["completions", "fish"]);
    assert!(fish.contains("complete -c berth"), "{fish}");
    assert!(fish.contains("retention"), "subcommands listed");

    let page = berth_ok(dir.path(), &["man"]);
    assert!(page.contains(".TH berth 1"), "{page}");
    assert!(page.contains("completions"), "subcommands listed");
    let out = dir.path().join("man1");
    berth_ok(dir.path(), &["man", "--dir", out.to_str().unwrap()]);
    for file in ["berth.1", "berth-serve.1", "berth-copy.1", "berth-audit.1"] {
        let text =
            std::fs::read_to_string(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.contains(".TH"), "{file}");
    }
    if have("man") {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(out.join("berth-copy.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(rendered.status.success());
        assert!(String::from_utf8_lossy(&rendered.stdout).contains("--platform"));
    }
}
