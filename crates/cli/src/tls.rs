//! `berth tls self-signed`: a private CA and a server certificate signed by
//! it, for first steps and tests, and the lines that make each client
//! trust the CA.
//!
//! ```text
//! DIR/
//!   ca.crt       the CA certificate (what clients trust)
//!   ca.key       its key (owner-only; keep it to sign the next certificate)
//!   server.crt   the server certificate, then the CA's (--tls-cert)
//!   server.key   its key (owner-only; --tls-key)
//! ```
//!
//! Run again on the same directory, it keeps the CA and replaces the server
//! certificate and key (each file by an atomic rename): a renewal that a
//! running `berth serve` picks up without a restart.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// Arguments of `berth tls`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: TlsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TlsCommand {
    /// Write a private CA and a server certificate signed by it (the CA is
    /// kept when DIR already has one), and print how clients trust it.
    SelfSigned(SelfSignedArgs),
    /// Write a client certificate (mutual TLS) signed by the CA of a
    /// `self-signed` directory, and print its subject for `berth user
    /// cert-map`.
    Client(ClientArgs),
}

/// Arguments of `berth tls client`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The directory of `berth tls self-signed` (its ca.crt and ca.key).
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The certificate's common name (its subject is `CN=NAME`).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Directory to write `client.cert` and `client.key` into (the names
    /// the Docker daemon, podman and skopeo look for in a certs.d
    /// directory).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days the certificate is valid.
    #[arg(long, default_value = "397", value_name = "N")]
    days: u32,
}

/// Arguments of `berth tls self-signed`.
#[derive(Debug, clap::Args)]
pub struct SelfSignedArgs {
    /// Name or address clients use to reach the registry (repeat for
    /// more); the first one is used in the printed instructions.
    #[arg(long = "host", value_name = "NAME", required = true)]
    hosts: Vec<String>,
    /// Also valid for localhost, 127.0.0.1 and ::1.
    #[arg(long)]
    local: bool,
    /// Port the registry serves HTTPS on (for the printed instructions).
    #[arg(long, default_value = "5000")]
    port: u16,
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days the server certificate is valid (the CA: ten years).
    #[arg(long, default_value = "397", value_name = "N")]
    days: u32,
}

/// Runs `berth tls`.
pub fn run(args: &TlsArgs) -> anyhow::Result<()> {
    match &args.command {
        TlsCommand::SelfSigned(a) => {
            let text = self_signed(a)?;
            print!("{text}");
            Ok(())
        }
        TlsCommand::Client(a) => {
            let text = client(a)?;
            print!("{text}");
            Ok(())
        }
    }
}

/// Writes a client certificate signed by the CA of `args.ca_dir`.
pub fn client(args: &ClientArgs) -> anyhow::Result<String> {
    let ca_dir = args.ca_dir.canonicalize().with_context(|| {
        format!(
            "{} (the directory of berth tls self-signed)",
            args.ca_dir.display()
        )
    })?;
    if !ca_dir.join("ca.key").exists() {
        bail!(
            "{} has no ca.key: give the directory `berth tls self-signed` wrote",
            ca_dir.display()
        );
    }
    let (ca_cert, ca_key, _) = ca(&ca_dir)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, args.name.clone());
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(random_serial()?);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = days_from_now(args.days);
    let key = KeyPair::generate().context("generating the client key")?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    let out = args.out.canonicalize()?;
    write_atomic(&out.join("client.key"), &key.serialize_pem(), true)?;
    write_atomic(&out.join("client.cert"), &cert.pem(), false)?;
    let subject = berth_server::tls::subject_of(cert.der())
        .context("reading back the certificate's subject")?;
    let o = out.display();
    Ok(format!(
        "wrote {o}/client.cert and {o}/client.key\n\
         subject: {subject}\n\
         \n\
         Map it to an account (a site admin):\n  \
         berth user cert-map add --subject '{subject}' --account ACCOUNT\n\
         \n\
         Clients send it from their certs.d directory (docker: /etc/docker/certs.d/HOST:PORT/, \
         podman and skopeo: --cert-dir DIR) next to ca.crt.\n"
    ))
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).context("the system random generator")?;
    bytes[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&bytes))
}

/// Writes `text` to `path` by a rename, owner-only when `secret`.
fn write_atomic(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn days_from_now(days: u32) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(days))
}

/// The CA of `dir`: loaded when present, else made and written.
fn ca(dir: &Path) -> anyhow::Result<(rcgen::Certificate, KeyPair, bool)> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    match (crt.exists(), key.exists()) {
        (true, true) => {
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let key_pair =
                KeyPair::from_pem(&key_pem).with_context(|| format!("{}", key.display()))?;
            let crt_pem = std::fs::read_to_string(&crt)
                .with_context(|| format!("reading {}", crt.display()))?;
            // The issuer of new certificates: same name, same key.
            let params = CertificateParams::from_ca_cert_pem(&crt_pem)
                .with_context(|| format!("{} is not a CA certificate", crt.display()))?;
            let cert = params.self_signed(&key_pair)?;
            Ok((cert, key_pair, true))
        }
        (false, false) => {
            let key_pair = KeyPair::generate().context("generating the CA key")?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "berth private CA");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.serial_number = Some(random_serial()?);
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = days_from_now(3650);
            let cert = params.self_signed(&key_pair)?;
            write_atomic(&key, &key_pair.serialize_pem(), true)?;
            write_atomic(&crt, &cert.pem(), false)?;
            Ok((cert, key_pair, false))
        }
        _ => bail!(
            "{} has only one of ca.crt and ca.key: restore the other, or remove both for a new CA",
            dir.display()
        ),
    }
}

/// Writes the files; returns what to print.
pub fn self_signed(args: &SelfSignedArgs) -> anyhow::Result<String> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let dir = args.out.canonicalize()?;
    let (ca_cert, ca_key, kept) = ca(&dir)?;

    let mut names: Vec<String> = args.hosts.clone();
    if args.local {
        names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    }
    names.dedup();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, args.hosts[0].clone());
    params.distinguished_name = dn;
    for n in &names {
        params.subject_alt_names.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .with_context(|| format!("{n:?} is not a host name or IP address"))?,
            ),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial()?);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = days_from_now(args.days);
    let key = KeyPair::generate().context("generating the server key")?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt"))?;
    // Key first: a reload between the two renames sees the new key with
    // the old certificate, refuses the pair, and retries on the next change.
    write_atomic(&dir.join("server.key"), &key.serialize_pem(), true)?;
    write_atomic(
        &dir.join("server.crt"),
        &format!("{}{}", cert.pem(), ca_pem),
        false,
    )?;
    Ok(instructions(args, &dir, kept))
}

fn instructions(args: &SelfSignedArgs, dir: &Path, kept: bool) -> String {
    let host = &args.hosts[0];
    let hp = if args.port == 443 {
        host.clone()
    } else {
        format!("{host}:{}", args.port)
    };
    let d = dir.display();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} CA: {d}/ca.crt (its key: {d}/ca.key, keep it private)",
        if kept { "kept the" } else { "wrote a new" }
    );
    let _ = writeln!(
        t,
        "wrote the server certificate {d}/server.crt and key {d}/server.key"
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "Serve HTTPS:");
    let _ = writeln!(
        t,
        "  berth serve --listen 0.0.0.0:{} --tls-cert {d}/server.crt --tls-key {d}/server.key",
        args.port
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "Docker daemon (on each machine that pulls or pushes):");
    let _ = writeln!(t, "  sudo mkdir -p /etc/docker/certs.d/{hp}");
    let _ = writeln!(t, "  sudo cp {d}/ca.crt /etc/docker/certs.d/{hp}/ca.crt");
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "containerd (config_path = \"/etc/containerd/certs.d\" in its CRI registry config; ctr: --hosts-dir /etc/containerd/certs.d):"
    );
    let _ = writeln!(t, "  sudo mkdir -p /etc/containerd/certs.d/{hp}");
    let _ = writeln!(
        t,
        "  sudo cp {d}/ca.crt /etc/containerd/certs.d/{hp}/ca.crt"
    );
    let _ = writeln!(
        t,
        "  printf 'server = \"https://{hp}\"\\n\\n[host.\"https://{hp}\"]\\n  ca = \"/etc/containerd/certs.d/{hp}/ca.crt\"\\n' | sudo tee /etc/containerd/certs.d/{hp}/hosts.toml"
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "podman, skopeo, buildah (or --cert-dir DIR with ca.crt in it):"
    );
    let _ = writeln!(t, "  sudo mkdir -p /etc/containers/certs.d/{hp}");
    let _ = writeln!(
        t,
        "  sudo cp {d}/ca.crt /etc/containers/certs.d/{hp}/ca.crt"
    );
    t
}
