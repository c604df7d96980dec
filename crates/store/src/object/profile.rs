//! The shared AWS files, `~/.aws/credentials` and `~/.aws/config`, read
//! as the AWS SDKs read them (`object_store` reads only the environment).
//!
//! * The profile is `AWS_PROFILE`, else `default`.
//! * The files are `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE`,
//!   else `~/.aws/credentials` and `~/.aws/config`; a missing file is
//!   an empty one. In the credentials file a profile's section is
//!   `[NAME]`; in the config file `[profile NAME]` (and `[default]`).
//! * Of the profile, `aws_access_key_id`, `aws_secret_access_key` and
//!   `aws_session_token` are taken from the credentials file, else from
//!   the config file (never mixed: the keys come as one set); `region`
//!   from the config file. Other ways a profile can name credentials
//!   (`role_arn`, `credential_process`, `sso_*`) are not supported: such a
//!   profile yields no keys, and the next source in the chain is used.
//!
//! Precedence (in [`super::connect`]): berth's explicit settings, then the
//! environment variables (`AWS_ACCESS_KEY_ID`, ...; `AWS_REGION`), then
//! these files, then the rest of `object_store`'s chain (web identity, ECS,
//! instance metadata), as in the AWS SDKs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::SettingsError;

/// Static keys from a profile. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Keys {
    pub(super) id: String,
    pub(super) secret: String,
    pub(super) token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the shared files say for the selected profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Profile {
    pub(super) keys: Option<Keys>,
    pub(super) region: Option<String>,
}

/// Sections of an INI file: name -> (lower-cased key -> value).
type Sections = HashMap<String, HashMap<String, String>>;

/// Parses the AWS flavour of INI: `[section]`, `key = value`, comments
/// from `#` or `;` at a line's start; indented lines (the nested values of
/// a key such as `s3 =`) are skipped.
fn parse(text: &str) -> Sections {
    let mut out = Sections::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else {
            continue;
        };
        if let Some(map) = out.get_mut(section) {
            map.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    out
}

/// The keys a section holds, if it holds both the id and the secret.
fn keys_of(section: &HashMap<String, String>) -> Option<Keys> {
    let nonempty = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
    Some(Keys {
        id: nonempty("aws_access_key_id")?,
        secret: nonempty("aws_secret_access_key")?,
        token: nonempty("aws_session_token"),
    })
}

/// `path` with a leading `~/` replaced by the home directory.
fn expand(path: &str, home: Option<&str>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => Path::new(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Reads a file's sections; a missing file has none.
fn read(path: &Path) -> Result<Sections, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sections::new()),
        Err(e) => Err(SettingsError::Files(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Reads the selected profile from the shared files, with `env` for the
/// environment (the process's, in [`super::connect`]).
pub(super) fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Profile, SettingsError> {
    let home = env("HOME");
    let file = |var: &str, default: &str| match env(var).filter(|v| !v.is_empty()) {
        Some(p) => Some(expand(&p, home.as_deref())),
        None => home
            .as_deref()
            .map(|h| Path::new(h).join(".aws").join(default)),
    };
    let explicit = env("AWS_PROFILE").filter(|p| !p.is_empty());
    let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
    let credentials = match file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
        Some(p) => read(&p)?,
        None => Sections::new(),
    };
    let config = match file("AWS_CONFIG_FILE", "config") {
        Some(p) => read(&p)?,
        None => Sections::new(),
    };
    let in_credentials = credentials.get(&name);
    let config_section = if name == "default" {
        config
            .get("default")
            .or_else(|| config.get("profile default"))
    } else {
        config.get(&format!("profile {name}"))
    };
    if explicit.is_some() && in_credentials.is_none() && config_section.is_none() {
        return Err(SettingsError::Files(format!(
            "AWS_PROFILE names the profile {name:?}, which neither the AWS credentials file \
             nor the AWS config file has"
        )));
    }
    Ok(Profile {
        keys: in_credentials
            .and_then(keys_of)
            .or_else(|| config_section.and_then(keys_of)),
        region: config_section
            .and_then(|s| s.get("region"))
            .filter(|r| !r.is_empty())
            .cloned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::{load, Keys, Profile};

    const CREDENTIALS: &str = "\
# a comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret-default

[ci]
aws_access_key_id=AKIDCI
aws_secret_access_key=secret/ci+key=
aws_session_token = token-ci
";

    const CONFIG: &str = "\
[default]
region = eu-west-1
s3 =
  addressing_style = path

; another comment
[profile ci]
region = us-west-2

[profile onlyconfig]
region = ap-south-1
aws_access_key_id = AKIDCONFIG
aws_secret_access_key = secret-config

[profile assumed]
role_arn = arn:aws:iam::123456789012:role/x
source_profile = default
";

    /// A home directory with both files, and an environment over it.
    fn setup(vars: &[(&str, &str)]) -> (tempfile::TempDir, HashMap<String, String>) {
        let home = tempfile::tempdir().unwrap();
        let aws = home.path().join(".aws");
        std::fs::create_dir_all(&aws).unwrap();
        std::fs::write(aws.join("credentials"), CREDENTIALS).unwrap();
        std::fs::write(aws.join("config"), CONFIG).unwrap();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("HOME".into(), home.path().display().to_string());
        (home, env)
    }

    fn profile(env: &HashMap<String, String>) -> Result<Profile, super::SettingsError> {
        load(&|k| env.get(k).cloned())
    }

    fn keys(id: &str, secret: &str, token: Option<&str>) -> Option<Keys> {
        Some(Keys {
            id: id.into(),
            secret: secret.into(),
            token: token.map(str::to_owned),
        })
    }

    #[test]
    fn the_default_profile_comes_from_both_files() {
        let (_home, env) = setup(&[]);
        let p = profile(&env).unwrap();
        assert_eq!(p.keys, keys("AKIDDEFAULT", "secret-default", None));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn aws_profile_selects_a_profile() {
        let (_home, env) = setup(&[("AWS_PROFILE", "ci")]);
        let p = profile(&env).unwrap();
        assert_eq!(p.keys, keys("AKIDCI", "secret/ci+key=", Some("token-ci")));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn keys_in_the_config_file_count_when_the_credentials_file_has_none() {
        let (_home, env) = setup(&[("AWS_PROFILE", "onlyconfig")]);
        let p = profile(&env).unwrap();
        assert_eq!(p.keys, keys("AKIDCONFIG", "secret-config", None));
        assert_eq!(p.region.as_deref(), Some("ap-south-1"));
    }

    #[test]
    fn a_profile_without_static_keys_yields_none() {
        let (_home, env) = setup(&[("AWS_PROFILE", "assumed")]);
        assert_eq!(profile(&env).unwrap(), Profile::default());
    }

    #[test]
    fn an_unknown_profile_is_an_error_naming_it() {
        let (_home, env) = setup(&[("AWS_PROFILE", "nope")]);
        let e = profile(&env).unwrap_err().to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn file_locations_come_from_the_environment() {
        let (home, mut env) = setup(&[]);
        let other = home.path().join("elsewhere");
        std::fs::write(
            &other,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n",
        )
        .unwrap();
        env.insert(
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            "~/elsewhere".to_owned(),
        );
        env.insert("AWS_CONFIG_FILE".into(), "/nonexistent/config".to_owned());
        let p = profile(&env).unwrap();
        assert_eq!(p.keys, keys("A", "B", None));
        assert_eq!(p.region, None);
    }

    #[test]
    fn no_home_and_no_files_is_nothing() {
        let env = HashMap::new();
        assert_eq!(profile(&env).unwrap(), Profile::default());
    }
}
