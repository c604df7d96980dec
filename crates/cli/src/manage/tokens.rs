//! `berth token`: personal and robot access tokens, and the
//! `dockerconfigjson` Kubernetes takes as an imagePullSecret.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use super::{print_json, print_table, segment, time, Api, Format, ManageArgs};

/// Create, list and revoke access tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub manage: ManageArgs,
}

/// `berth token` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once. With `-o dockerconfigjson`, print a Docker config for `kubectl create secret generic --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=FILE`.
    Create {
        /// A label for the token (`ci`, `laptop`, `k8s-pull`).
        #[arg(long)]
        name: String,
        /// The account the token acts as: yourself (default) or a robot of an organisation you administer (`acme+ci`).
        #[arg(long)]
        owner: Option<String>,
        /// Allowed actions, repeatable or comma-separated: pull, push, delete, admin (default: pull).
        #[arg(long = "scope", value_delimiter = ',', value_parser = ["pull", "push", "delete", "admin"])]
        scopes: Vec<String>,
        /// Limit to namespaces or repository globs (`acme`, `acme/web-*`), repeatable; default: everything the owner may do.
        #[arg(long = "pattern")]
        patterns: Vec<String>,
        /// Lifetime: `30d`, `12h`, `1w`; `never` for no expiry (default: 90d).
        #[arg(long, default_value = "90d")]
        expires: String,
        /// Registry host written into the dockerconfigjson (default: the host of --registry).
        #[arg(long)]
        server: Option<String>,
    },
    /// List tokens (yours, or of --owner); secrets are never shown again.
    List {
        /// Whose tokens: a user or robot (site admins and org admins).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Revoke a token by id; it stops working at once.
    Revoke {
        /// Token id (the `ID` column of `berth token list`).
        id: String,
    },
}

/// `30d` → milliseconds; `never` → `None`.
pub fn parse_lifetime(s: &str) -> anyhow::Result<Option<i64>> {
    if s == "never" {
        return Ok(None);
    }
    let d =
        berth_oci::duration::parse(s).map_err(|e| anyhow::anyhow!("--expires: {e}, or never"))?;
    anyhow::ensure!(!d.is_zero(), "--expires must be positive");
    Ok(Some(d.as_millis() as i64))
}

/// The Docker config JSON holding `username`/`secret` for `server`.
pub fn dockerconfigjson(server: &str, username: &str, secret: &str) -> Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{secret}"));
    json!({ "auths": { server: { "username": username, "password": secret, "auth": auth } } })
}

/// Runs `berth token`.
pub async fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let api = match args.command {
        TokenCommand::Create { .. } => Api::connect(&args.manage).await?,
        _ => Api::new(&args.manage).await?,
    };
    match &args.command {
        TokenCommand::Create {
            name,
            owner,
            scopes,
            patterns,
            expires,
            server,
        } => {
            let scopes = if scopes.is_empty() {
                vec!["pull".to_owned()]
            } else {
                scopes.clone()
            };
            let mut body = json!({ "name": name, "scopes": scopes, "patterns": patterns });
            if let Some(o) = owner {
                body["owner"] = o.clone().into();
            }
            if let Some(ms) = parse_lifetime(expires)? {
                body["expires_in_ms"] = ms.into();
            }
            let created: Value = api.call(Method::POST, "/tokens", &body).await?;
            let secret = created["token"].as_str().unwrap_or_default();
            match api.format {
                Format::Json | Format::Sarif => print_json(&created)?,
                Format::Dockerconfigjson => {
                    let server = server.clone().unwrap_or_else(|| api.host().to_owned());
                    let user = created["owner"].as_str().unwrap_or_default();
                    print_json(&dockerconfigjson(&server, user, secret))?;
                }
                Format::Table => {
                    println!("{secret}");
                    eprintln!(
                        "token {} for {} (scopes {}, expires {}): the secret is shown once; store it now",
                        created["id"].as_str().unwrap_or_default(),
                        created["owner"].as_str().unwrap_or_default(),
                        scopes.join(","),
                        time(created["expires_at"].as_i64()),
                    );
                }
            }
        }
        TokenCommand::List { owner } => {
            let query: Vec<(&str, String)> = owner.iter().map(|o| ("owner", o.clone())).collect();
            let tokens: Vec<Value> = api.get("/tokens", &query).await?;
            if api.format != Format::Table {
                return print_json(&tokens);
            }
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default()
            };
            let rows = tokens
                .iter()
                .map(|t| {
                    let status = if !t["revoked_at"].is_null() {
                        "revoked"
                    } else {
                        "active"
                    };
                    vec![
                        t["id"].as_str().unwrap_or("").to_owned(),
                        t["owner"].as_str().unwrap_or("").to_owned(),
                        t["name"].as_str().unwrap_or("").to_owned(),
                        list(&t["scopes"]),
                        match list(&t["patterns"]) {
                            p if p.is_empty() => "*".to_owned(),
                            p => p,
                        },
                        time(t["expires_at"].as_i64()),
                        time(t["last_used_at"].as_i64()),
                        status.to_owned(),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &[
                    "ID",
                    "OWNER",
                    "NAME",
                    "SCOPES",
                    "PATTERNS",
                    "EXPIRES",
                    "LAST USED",
                    "STATUS",
                ],
                &rows,
            );
        }
        TokenCommand::Revoke { id } => {
            api.delete(&format!("/tokens/{}", segment(id))).await?;
            eprintln!("revoked token {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d").unwrap(), Some(30 * 86_400_000));
        assert_eq!(parse_lifetime("12h").unwrap(), Some(12 * 3_600_000));
        assert_eq!(parse_lifetime("never").unwrap(), None);
        assert!(parse_lifetime("30").is_err());
        assert!(parse_lifetime("0d").is_err());
        assert!(parse_lifetime("xd").is_err());
    }

    #[test]
    fn docker_config() {
        let v = dockerconfigjson("registry.example.com", "acme+ci", "berth_x");
        let e = &v["auths"]["registry.example.com"];
        assert_eq!(e["username"], "acme+ci");
        assert_eq!(e["auth"], "YWNtZStjaTpiZXJ0aF94");
    }
}
