//! `berth trust add|list|remove|policy|verify`: the keys a namespace
//! trusts for signatures, its pull policy, and a manifest's verdict,
//! through the management API (see docs/signing.md).

use std::path::PathBuf;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::{cell, segment, table, time, ManageArgs};

/// Signature verification: trusted keys and the pull policy of a namespace.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
    #[command(flatten)]
    manage: ManageArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Trust a cosign public key (cosign signatures, sigstore bundles), a
    /// root certificate (notation signatures), or keyless sigstore bundles
    /// by an identity (a Fulcio root, the identity and OIDC issuer
    /// allowed, the Rekor key) for a namespace.
    #[command(group(clap::ArgGroup::new("material").required(true).args(["cosign_key", "notation_root", "fulcio_root"])))]
    #[command(group(clap::ArgGroup::new("identity").args(["certificate_identity", "certificate_identity_regexp"])))]
    Add {
        /// Namespace.
        namespace: String,
        /// The public key file `cosign generate-key-pair` wrote (cosign.pub):
        /// ECDSA P-256/P-384, RSA or Ed25519, PEM.
        #[arg(long, value_name = "FILE")]
        cosign_key: Option<PathBuf>,
        /// A root CA certificate (PEM) that notation signing certificates
        /// chain to, as notation's trust store holds it.
        #[arg(long, value_name = "FILE")]
        notation_root: Option<PathBuf>,
        /// The Fulcio root certificate, with any intermediates (PEM), that
        /// keyless signing certificates chain to.
        #[arg(long, value_name = "FILE", requires_all = ["identity", "certificate_oidc_issuer", "rekor_key"])]
        fulcio_root: Option<PathBuf>,
        /// Keyless: the signer identity allowed, exactly (an e-mail, or a
        /// workflow URI such as
        /// https://github.com/acme/web/.github/workflows/release.yml@refs/heads/main).
        #[arg(long, requires = "fulcio_root")]
        certificate_identity: Option<String>,
        /// Keyless: a regular expression the whole signer identity must match.
        #[arg(long, requires = "fulcio_root")]
        certificate_identity_regexp: Option<String>,
        /// Keyless: the OIDC issuer the certificate must name
        /// (https://token.actions.githubusercontent.com, ...).
        #[arg(long, requires = "fulcio_root")]
        certificate_oidc_issuer: Option<String>,
        /// Keyless: the Rekor log's public key (PEM) whose signed entry
        /// timestamps prove when a signature was made.
        #[arg(long, value_name = "FILE", requires = "fulcio_root")]
        rekor_key: Option<PathBuf>,
        /// The name in the namespace (a-z, 0-9, '.', '_', '-'); default:
        /// cosign- or notation- and the start of its fingerprint.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the trusted keys and policy of a namespace (of every
    /// namespace, for site admins, without one).
    List {
        /// Namespace.
        namespace: Option<String>,
    },
    /// Stop trusting a key.
    Remove {
        /// Namespace.
        namespace: String,
        /// The key's name (from `list`).
        name: String,
    },
    /// Set what pulls of unverified manifests do: enforce (refused, 403),
    /// warn (allowed, logged and counted) or off.
    Policy {
        /// Namespace.
        namespace: String,
        /// enforce, warn or off.
        #[arg(value_parser = ["enforce", "warn", "off"])]
        mode: String,
    },
    /// Show whether a manifest is verified, by which key or why not
    /// (exit status 1 when it is not).
    Verify {
        /// REPOSITORY:TAG or REPOSITORY@DIGEST (default tag: latest).
        image: String,
    },
}

fn rows(views: &[Value]) -> String {
    let mut rows = Vec::new();
    for v in views {
        let policy = v["policy"].as_str().unwrap_or("off").to_owned();
        let keys = v["keys"].as_array().cloned().unwrap_or_default();
        if keys.is_empty() {
            rows.push(vec![
                cell(&v["namespace"]),
                policy.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for k in keys {
            let fp = k["fingerprint"].as_str().unwrap_or("");
            rows.push(vec![
                cell(&v["namespace"]),
                policy.clone(),
                cell(&k["name"]),
                cell(&k["algorithm"]),
                fp.chars().take(16).collect(),
                time(k["created_at"].as_i64()),
                cell(&k["created_by"]),
            ]);
        }
    }
    table(
        &[
            "NAMESPACE",
            "POLICY",
            "KEY",
            "ALGORITHM",
            "FINGERPRINT",
            "ADDED",
            "BY",
        ],
        &rows,
    )
}

/// `acme/web:v1` -> (`acme/web`, `v1`); `acme/web@sha256:..` -> digest.
fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_owned(), digest.to_owned());
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

/// Runs the subcommand.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let m = &args.manage;
    let api = m.api().await?;
    match args.command {
        Cmd::Add {
            namespace,
            cosign_key,
            notation_root,
            fulcio_root,
            certificate_identity,
            certificate_identity_regexp,
            certificate_oidc_issuer,
            rekor_key,
            name,
        } => {
            let read = |file: &PathBuf| {
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
            };
            let mut body = match (cosign_key, notation_root, fulcio_root) {
                (Some(f), _, _) => json!({ "cosign_key": read(&f)? }),
                (None, Some(f), _) => json!({ "notation_root": read(&f)? }),
                (None, None, Some(f)) => {
                    let rekor = match &rekor_key {
                        Some(k) => read(k)?,
                        None => bail!("give --rekor-key FILE with --fulcio-root"),
                    };
                    json!({
                        "fulcio_root": read(&f)?,
                        "certificate_identity": certificate_identity,
                        "certificate_identity_regexp": certificate_identity_regexp,
                        "certificate_oidc_issuer": certificate_oidc_issuer,
                        "rekor_key": rekor,
                    })
                }
                (None, None, None) => {
                    bail!("give --cosign-key FILE, --notation-root FILE or --fulcio-root FILE")
                }
            };
            if let Some(n) = name {
                body["name"] = Value::String(n);
            }
            let path = format!("/namespaces/{}/trust/keys", segment(&namespace));
            let key: Value = api.call(Method::POST, &path, &body).await?;
            let view = json!({ "namespace": namespace, "keys": [key.clone()] });
            m.print(&key, || rows(std::slice::from_ref(&view)));
        }
        Cmd::List { namespace } => match namespace {
            Some(ns) => {
                let out: Value = api
                    .get(&format!("/namespaces/{}/trust", segment(&ns)), &[])
                    .await?;
                m.print(&out, || rows(std::slice::from_ref(&out)));
            }
            None => {
                let out: Value = api.get("/trust", &[]).await?;
                let list = out["namespaces"].as_array().cloned().unwrap_or_default();
                m.print(&out, || rows(&list));
            }
        },
        Cmd::Remove { namespace, name } => {
            let path = format!(
                "/namespaces/{}/trust/keys/{}",
                segment(&namespace),
                segment(&name)
            );
            api.delete(&path).await?;
            let out = json!({ "namespace": namespace, "removed": name });
            m.print(&out, || {
                format!("removed key {name} from namespace {namespace}\n")
            });
        }
        Cmd::Policy { namespace, mode } => {
            let path = format!("/namespaces/{}/trust/policy", segment(&namespace));
            let out: Value = api
                .call(Method::PUT, &path, &json!({ "mode": mode }))
                .await?;
            m.print(&out, || rows(std::slice::from_ref(&out)));
        }
        Cmd::Verify { image } => {
            let (repo, reference) = split_image(&image);
            let path = format!("/repositories/{repo}/signature");
            let out: Value = api.get(&path, &[("reference", reference)]).await?;
            let verified = out["state"] == "verified";
            m.print(&out, || {
                let how = if let Some(summary) = out["summary"].as_str() {
                    summary.to_owned()
                } else if verified {
                    format!(
                        "verified by key {} ({})",
                        cell(&out["key"]),
                        cell(&out["algorithm"])
                    )
                } else {
                    format!(
                        "NOT verified ({}): {}",
                        cell(&out["reason"]),
                        cell(&out["detail"])
                    )
                };
                format!(
                    "{repo}@{}\n  {how}\n  policy: {}\n",
                    cell(&out["digest"]),
                    out["policy"].as_str().unwrap_or("off")
                )
            });
            if !verified {
                bail!("{repo}@{} is not verified", cell(&out["digest"]));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn images() {
        assert_eq!(split_image("acme/web:v1"), ("acme/web".into(), "v1".into()));
        assert_eq!(
            split_image("acme/web"),
            ("acme/web".into(), "latest".into())
        );
        assert_eq!(
            split_image("acme/web@sha256:ab"),
            ("acme/web".into(), "sha256:ab".into())
        );
    }
}
