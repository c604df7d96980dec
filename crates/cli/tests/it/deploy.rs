//! The deployables, checked by the tools that read them: the systemd unit
//! by `systemd-analyze verify` (with its `ExecStart` pointed at the binary
//! under test, which verify requires to exist), which must accept it
//! without a single warning, and keep its hardening; the `Dockerfile`
//! built and run ([`image`]); the Compose files ([`compose`]); the Helm
//! chart ([`helm`]).

use std::process::Command;

use crate::common::berth_bin;
use crate::interop::require;

mod compose;
mod helm;
mod image;

#[test]
fn the_systemd_unit_verifies_cleanly_and_is_hardened() {
    if !require(
        "systemd-analyze",
        "deploy::the_systemd_unit_verifies_cleanly_and_is_hardened",
    ) {
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/berth.service"
    ))
    .unwrap();
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=berth",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ExecStart=/usr/local/bin/berth serve --data-dir /var/lib/berth",
    ] {
        assert!(unit.contains(needed), "deploy/berth.service lacks {needed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/berth", berth_bin())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warns: {said}"
    );

    // The check sees a mistake: a misspelt key is a warning.
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/berth", berth_bin())
            .replace("NoNewPrivileges", "NoNewPrivilegez"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoNewPrivilegez"));
}
