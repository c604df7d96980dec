//! From the storage settings to a blob store: the one place `serve` (and
//! any command that moves blobs, such as a migration) opens one.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_store::object::{parse_url, S3Settings};
use berth_store::{BlobStore, BucketStore, FsStore, Metered};
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// How long a presigned redirect URL stays valid.
pub const REDIRECT_TTL: Duration = Duration::from_secs(600);

/// A quarantine whose lock is older than this was left by a collector
/// that died; opening the store puts its blob back.
const STALE_QUARANTINE: Duration = Duration::from_secs(600);

/// `storage`: where blobs are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Storage {
    /// The data directory.
    #[default]
    Fs,
    /// An S3-compatible bucket: `s3://BUCKET[/PREFIX]`.
    S3(String),
}

impl FromStr for Storage {
    type Err = String;

    fn from_str(s: &str) -> Result<Storage, String> {
        if s == "fs" {
            return Ok(Storage::Fs);
        }
        parse_url(s)
            .map(|_| Storage::S3(s.to_owned()))
            .map_err(|_| format!("invalid storage {s:?} (expected fs or s3://BUCKET[/PREFIX])"))
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Fs => f.write_str("fs"),
            Storage::S3(url) => f.write_str(url),
        }
    }
}

impl Serialize for Storage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Storage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Storage, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How to reach the object store (the `s3_*` settings).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// `s3_endpoint`.
    pub endpoint: Option<String>,
    /// `s3_region`.
    pub region: Option<String>,
    /// `s3_path_style`.
    pub path_style: bool,
    /// `s3_redirect`.
    pub redirect: bool,
    /// `s3_public_endpoint`.
    pub public_endpoint: Option<String>,
}

/// The `--s3-*` flags (and `s3_*` TOML keys) saying how to reach an object
/// store: one struct, flattened into `berth serve`'s settings and into the
/// arguments of `migrate` and `backup`.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct S3Flags {
    /// The S3 API endpoint (`http(s)://HOST[:PORT]`) of an `s3://` store
    /// [default: AWS's regional endpoint].
    #[arg(long, env = "BERTH_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The region S3 requests are signed for [default: `AWS_REGION`, the
    /// AWS config file's, else us-east-1].
    #[arg(long, env = "BERTH_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (`ENDPOINT/BUCKET/KEY`), which most
    /// self-hosted object stores want.
    #[arg(
        long,
        env = "BERTH_S3_PATH_STYLE",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub s3_path_style: bool,
}

impl S3Flags {
    /// The options these flags give (no redirects: these commands only
    /// read and write blobs themselves).
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            ..S3Options::default()
        }
    }
}

impl Settings {
    /// The `s3_*` settings.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            redirect: self.s3_redirect,
            public_endpoint: self.s3_public_endpoint.clone(),
            ..self.s3.options()
        }
    }
}

/// Checks the storage settings together.
pub fn check(cfg: &Settings) -> anyhow::Result<()> {
    for (key, url) in [
        ("s3_endpoint", &cfg.s3.s3_endpoint),
        ("s3_public_endpoint", &cfg.s3_public_endpoint),
    ] {
        if let Some(u) = url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("{key} must be an http:// or https:// URL, not {u:?}");
            }
        }
    }
    if cfg.storage == Storage::Fs && cfg.s3_redirect {
        bail!("s3_redirect needs s3:// storage (storage is fs)");
    }
    Ok(())
}

/// Opens the blob store `storage` names: the filesystem under `data_dir`,
/// or the bucket, checked with one request (wrong endpoints or
/// credentials fail here, not at the first push), with quarantines left
/// by a dead collector put back. Its operations are timed for `/metrics`
/// ([`Metered`]). `single_node`: no other process serves this data
/// directory (SQLite), so the filesystem store keeps upload sessions in
/// memory until their first byte and clears all of `tmp/` at start (with
/// replicas, only what was not written to for an hour).
pub async fn open(
    storage: &Storage,
    s3: &S3Options,
    data_dir: &Path,
    single_node: bool,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    match storage {
        Storage::Fs => {
            let mut store = FsStore::open_with(data_dir, !single_node)
                .with_context(|| format!("opening blob storage in {}", data_dir.display()))?;
            if single_node {
                store = store.fresh_sessions_in_memory();
            }
            Ok(Arc::new(Metered::new(store, "filesystem")))
        }
        Storage::S3(url) => {
            let settings = S3Settings {
                url: url.clone(),
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                path_style: s3.path_style,
                redirect: s3.redirect.then_some(REDIRECT_TTL),
                public_endpoint: s3.public_endpoint.clone(),
                credentials: None,
            };
            let store = BucketStore::connect(&settings)
                .with_context(|| format!("configuring object storage {url}"))?;
            store
                .check()
                .await
                .with_context(|| format!("reaching object storage {url}"))?;
            let recovered = store
                .recover_quarantines(STALE_QUARANTINE)
                .await
                .with_context(|| format!("recovering quarantined blobs in {url}"))?;
            if recovered > 0 {
                tracing::info!(
                    recovered,
                    "put back blobs an interrupted garbage collection left"
                );
            }
            Ok(Arc::new(Metered::new(store, "s3")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Storage;

    #[test]
    fn storage_settings_parse() {
        assert_eq!("fs".parse::<Storage>(), Ok(Storage::Fs));
        assert_eq!(
            "s3://bucket/some/prefix".parse::<Storage>(),
            Ok(Storage::S3("s3://bucket/some/prefix".to_owned()))
        );
        assert!("s3://".parse::<Storage>().is_err());
        assert!("/var/lib/berth".parse::<Storage>().is_err());
    }
}
