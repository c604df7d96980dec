//! `berth user` and `berth org`: accounts, organisations, members, robots.

use std::io::Read as _;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Value};

use super::{print_json, print_table, segment, time, Api, Format, ManageArgs};

/// Manage user accounts (site admins; anyone may change their own password).
#[derive(Debug, Clone, clap::Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
    #[command(flatten)]
    pub manage: ManageArgs,
}

/// `berth user` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// List users and robots.
    List,
    /// Create a user (and its namespace). Without --password-stdin a password is generated and printed once.
    Create {
        /// Login name, also the user's namespace.
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a site admin.
        #[arg(long)]
        site_admin: bool,
        /// Visibility of the user's namespace (default: the registry's default_visibility).
        #[arg(long, value_parser = ["public", "private"])]
        visibility: Option<String>,
    },
    /// Delete a user, its memberships, tokens and namespace settings (its repositories stay, private).
    Delete {
        /// Login name.
        name: String,
    },
    /// Set a new password, read from standard input (or generated with --generate).
    Passwd {
        /// Login name.
        name: String,
        /// Generate a password and print it once.
        #[arg(long)]
        generate: bool,
    },
    /// Change a user's flags.
    Set {
        /// Login name.
        name: String,
        /// Grant or withdraw site admin.
        #[arg(long)]
        site_admin: Option<bool>,
        /// Disable (true) or re-enable (false) the account; disabled accounts and their tokens cannot log in.
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Client certificate subjects (mutual TLS) that authenticate as an account without a
    /// password (site admins).
    CertMap {
        #[command(subcommand)]
        command: CertMapCommand,
    },
}

/// `berth user cert-map` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertMapCommand {
    /// List the mapped subjects.
    List,
    /// Map a certificate subject to a user or robot account (replacing its earlier mapping).
    Add {
        #[command(flatten)]
        subject: SubjectArg,
        /// The account the certificate authenticates as.
        #[arg(long)]
        account: String,
    },
    /// Remove a subject's mapping.
    Remove {
        #[command(flatten)]
        subject: SubjectArg,
    },
}

/// A certificate subject, given or read from a certificate.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SubjectArg {
    /// The subject as an RFC 4514 name (`CN=ci,O=acme`; what `openssl x509 -noout -subject
    /// -nameopt RFC2253` prints).
    #[arg(long)]
    subject: Option<String>,
    /// Read the subject from this PEM certificate (its first one).
    #[arg(long, value_name = "FILE")]
    cert: Option<std::path::PathBuf>,
}

impl SubjectArg {
    fn resolve(&self) -> anyhow::Result<String> {
        if let Some(s) = &self.subject {
            return Ok(s.clone());
        }
        let path = self
            .cert
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("give --subject or --cert"))?;
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let der = pem_block(&pem)
            .ok_or_else(|| anyhow::anyhow!("{} holds no PEM certificate", path.display()))?;
        berth_server::tls::subject_of(&der)
            .ok_or_else(|| anyhow::anyhow!("{} is not a valid X.509 certificate", path.display()))
    }
}

/// The bytes of the first `CERTIFICATE` PEM block.
fn pem_block(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Manage organisations, their members and robot accounts.
#[derive(Debug, Clone, clap::Args)]
pub struct OrgArgs {
    #[command(subcommand)]
    pub command: OrgCommand,
    #[command(flatten)]
    pub manage: ManageArgs,
}

/// `berth org` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum OrgCommand {
    /// List organisations.
    List,
    /// Create an organisation (a namespace); the creator becomes its admin.
    Create {
        /// Name, also the namespace.
        name: String,
        /// Visibility of its repositories (default: the registry's default_visibility).
        #[arg(long, value_parser = ["public", "private"])]
        visibility: Option<String>,
    },
    /// Delete an organisation, its memberships, robots and settings; refused while it holds
    /// repositories, unless --delete-repositories.
    Delete {
        /// Name.
        name: String,
        /// Delete its repositories too (their blobs are reclaimed by garbage collection).
        #[arg(long)]
        delete_repositories: bool,
    },
    /// List members and their roles.
    Members {
        /// Organisation.
        org: String,
    },
    /// Add a member or change its role.
    AddMember {
        /// Organisation.
        org: String,
        /// User or robot (`acme+ci`).
        member: String,
        /// Role: read (pull), write (push, tag), admin (delete, settings, members).
        #[arg(long, value_parser = ["read", "write", "admin"], default_value = "read")]
        role: String,
    },
    /// Remove a member.
    RemoveMember {
        /// Organisation.
        org: String,
        /// User or robot.
        member: String,
    },
    /// List the organisation's robot accounts.
    Robots {
        /// Organisation.
        org: String,
    },
    /// Create a robot account `ORG+NAME` (for CI) with a role; give it a token with `berth token create --owner ORG+NAME`.
    AddRobot {
        /// Organisation.
        org: String,
        /// Robot name (the account is ORG+NAME).
        name: String,
        /// Role of the robot in the organisation.
        #[arg(long, value_parser = ["read", "write", "admin"], default_value = "write")]
        role: String,
    },
}

fn read_stdin_secret() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!s.is_empty(), "the password on standard input is empty");
    Ok(s)
}

fn show_generated(v: &Value, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        return print_json(v);
    }
    if let Some(p) = v["password"].as_str() {
        println!("{p}");
        eprintln!("(the generated password is shown once; store it now)");
    }
    Ok(())
}

/// Runs `berth user`.
async fn run_cert_map(api: &Api, command: &CertMapCommand) -> anyhow::Result<()> {
    match command {
        CertMapCommand::List => {
            let all: Vec<Value> = api.get("/certificates", &[]).await?;
            if api.format == Format::Json {
                return print_json(&all);
            }
            let rows = all
                .iter()
                .map(|m| {
                    vec![
                        m["subject"].as_str().unwrap_or("").to_owned(),
                        m["account"].as_str().unwrap_or("").to_owned(),
                        time(m["created_at"].as_i64()),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["SUBJECT", "ACCOUNT", "MAPPED"], &rows);
        }
        CertMapCommand::Add { subject, account } => {
            let subject = subject.resolve()?;
            let body = json!({ "subject": subject, "account": account });
            let mapped: Value = api.call(Method::PUT, "/certificates", &body).await?;
            if api.format == Format::Json {
                print_json(&mapped)?;
            }
            eprintln!("client certificates with subject {subject} now authenticate as {account}");
        }
        CertMapCommand::Remove { subject } => {
            let subject = subject.resolve()?;
            api.delete(&format!("/certificates?subject={}", segment(&subject)))
                .await?;
            eprintln!("removed the mapping of {subject}");
        }
    }
    Ok(())
}

pub async fn run_user(args: &UserArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    match &args.command {
        UserCommand::List => {
            let users: Vec<Value> = api.get("/users", &[]).await?;
            if api.format == Format::Json {
                return print_json(&users);
            }
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u["name"].as_str().unwrap_or("").to_owned(),
                        u["kind"].as_str().unwrap_or("").to_owned(),
                        if u["site_admin"] == true { "yes" } else { "" }.to_owned(),
                        if u["disabled_at"].is_null() {
                            ""
                        } else {
                            "disabled"
                        }
                        .to_owned(),
                        time(u["created_at"].as_i64()),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["NAME", "KIND", "SITE ADMIN", "STATUS", "CREATED"], &rows);
        }
        UserCommand::Create {
            name,
            password_stdin,
            site_admin,
            visibility,
        } => {
            let mut body = json!({ "name": name, "site_admin": site_admin });
            if *password_stdin {
                body["password"] = read_stdin_secret()?.into();
            }
            if let Some(v) = visibility {
                body["visibility"] = v.clone().into();
            }
            let created: Value = api.call(Method::POST, "/users", &body).await?;
            show_generated(&created, api.format)?;
            eprintln!("created user {name}");
        }
        UserCommand::Delete { name } => {
            api.delete(&format!("/users/{}", segment(name))).await?;
            eprintln!("deleted user {name}");
        }
        UserCommand::Passwd { name, generate } => {
            let body = if *generate {
                json!({})
            } else {
                json!({ "password": read_stdin_secret()? })
            };
            let path = format!("/users/{}/password", segment(name));
            let answer: Value = api.call(Method::PUT, &path, &body).await?;
            show_generated(&answer, api.format)?;
            eprintln!("password of {name} changed");
        }
        UserCommand::Set {
            name,
            site_admin,
            disabled,
        } => {
            let mut body = json!({});
            if let Some(a) = site_admin {
                body["site_admin"] = (*a).into();
            }
            if let Some(d) = disabled {
                body["disabled"] = (*d).into();
            }
            anyhow::ensure!(
                body.as_object().is_some_and(|o| !o.is_empty()),
                "nothing to change: give --site-admin or --disabled"
            );
            let user: Value = api
                .call(Method::PATCH, &format!("/users/{}", segment(name)), &body)
                .await?;
            if api.format == Format::Json {
                print_json(&user)?;
            }
        }
        UserCommand::CertMap { command } => run_cert_map(&api, command).await?,
    }
    Ok(())
}

/// Runs `berth org`.
pub async fn run_org(args: &OrgArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.manage).await?;
    match &args.command {
        OrgCommand::List => {
            let orgs: Vec<Value> = api.get("/orgs", &[]).await?;
            if api.format == Format::Json {
                return print_json(&orgs);
            }
            let rows = orgs
                .iter()
                .map(|o| {
                    vec![
                        o["name"].as_str().unwrap_or("").to_owned(),
                        o["visibility"].as_str().unwrap_or("").to_owned(),
                        time(o["created_at"].as_i64()),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["NAME", "VISIBILITY", "CREATED"], &rows);
        }
        OrgCommand::Create { name, visibility } => {
            let mut body = json!({ "name": name });
            if let Some(v) = visibility {
                body["visibility"] = v.clone().into();
            }
            let org: Value = api.call(Method::POST, "/orgs", &body).await?;
            if api.format == Format::Json {
                print_json(&org)?;
            }
            eprintln!("created organisation {name}");
        }
        OrgCommand::Delete {
            name,
            delete_repositories,
        } => {
            let query = if *delete_repositories {
                "?delete_repositories=true"
            } else {
                ""
            };
            api.delete(&format!("/orgs/{}{query}", segment(name)))
                .await?;
            eprintln!("deleted organisation {name}");
        }
        OrgCommand::Members { org } => {
            let members: Vec<Value> = api
                .get(&format!("/orgs/{}/members", segment(org)), &[])
                .await?;
            if api.format == Format::Json {
                return print_json(&members);
            }
            let rows = members
                .iter()
                .map(|m| {
                    vec![
                        m["member"].as_str().unwrap_or("").to_owned(),
                        m["role"].as_str().unwrap_or("").to_owned(),
                        time(m["added_at"].as_i64()),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["MEMBER", "ROLE", "SINCE"], &rows);
        }
        OrgCommand::AddMember { org, member, role } => {
            let path = format!("/orgs/{}/members/{}", segment(org), segment(member));
            let _: Value = api
                .call(Method::PUT, &path, &json!({ "role": role }))
                .await?;
            eprintln!("{member} is now {role} in {org}");
        }
        OrgCommand::RemoveMember { org, member } => {
            api.delete(&format!(
                "/orgs/{}/members/{}",
                segment(org),
                segment(member)
            ))
            .await?;
            eprintln!("removed {member} from {org}");
        }
        OrgCommand::Robots { org } => {
            let robots: Vec<Value> = api
                .get(&format!("/orgs/{}/robots", segment(org)), &[])
                .await?;
            if api.format == Format::Json {
                return print_json(&robots);
            }
            let rows = robots
                .iter()
                .map(|r| {
                    vec![
                        r["name"].as_str().unwrap_or("").to_owned(),
                        r["role"].as_str().unwrap_or("-").to_owned(),
                        time(r["created_at"].as_i64()),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["ROBOT", "ROLE", "CREATED"], &rows);
        }
        OrgCommand::AddRobot { org, name, role } => {
            let path = format!("/orgs/{}/robots", segment(org));
            let robot: Value = api
                .call(Method::POST, &path, &json!({ "name": name, "role": role }))
                .await?;
            if api.format == Format::Json {
                print_json(&robot)?;
            } else {
                println!("{}", robot["name"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
