//! Connecting to an S3-compatible bucket.
//!
//! Credentials and defaults come from the standard AWS sources, in the
//! AWS SDKs' order: the environment as `object_store`'s
//! `AmazonS3Builder::from_env` reads it (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, `AWS_ENDPOINT`, ...); then the shared files
//! `~/.aws/credentials` and `~/.aws/config` with `AWS_PROFILE`,
//! `AWS_SHARED_CREDENTIALS_FILE` and `AWS_CONFIG_FILE` (see [`super::profile`]);
//! then web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`),
//! ECS task credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) and,
//! failing those, the EC2 instance metadata service. berth's own settings
//! (endpoint, region, addressing style) override all of them.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::profile::{self, Profile};
use super::{Backend, BucketStore};

/// How berth reaches its bucket.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `s3://BUCKET[/PREFIX]`.
    pub url: String,
    /// The S3 API endpoint (`http(s)://host:port`); AWS's regional one
    /// when unset.
    pub endpoint: Option<String>,
    /// The region requests are signed for (`us-east-1` when unset and not
    /// in the environment).
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of
    /// virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Redirect blob reads to presigned URLs valid this long.
    pub redirect: Option<Duration>,
    /// The endpoint clients reach the object store at, for presigned URLs
    /// (the API endpoint when unset).
    pub public_endpoint: Option<String>,
    /// An access key id and secret given explicitly (tests, tools); the
    /// environment's otherwise. Never logged.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("redirect", &self.redirect)
            .field("public_endpoint", &self.public_endpoint)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A storage setting berth cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL is not `s3://BUCKET[/PREFIX]`.
    #[error("storage URL {0:?} is not s3://BUCKET[/PREFIX]")]
    Url(String),
    /// `object_store` refused the configuration.
    #[error("object storage settings: {0}")]
    Backend(#[from] object_store::Error),
    /// The shared AWS files could not be used.
    #[error("AWS shared configuration: {0}")]
    Files(String),
}

/// Splits `s3://bucket/prefix`.
pub fn parse_url(url: &str) -> Result<(String, String), SettingsError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| SettingsError::Url(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(SettingsError::Url(url.to_owned()));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

/// The endpoint of a virtual-hosted bucket: the bucket's name before the
/// host.
fn virtual_host(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

/// What the environment leaves to the shared AWS files: read them only
/// then (so an `AWS_PROFILE` naming a missing profile matters only when
/// the profile would be used).
fn shared_files(s: &S3Settings) -> Result<Profile, SettingsError> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let need_keys = s.credentials.is_none() && !set("AWS_ACCESS_KEY_ID");
    let need_region = s.region.is_none() && !set("AWS_REGION") && !set("AWS_DEFAULT_REGION");
    if need_keys || need_region {
        let profile = profile::load(&|k| std::env::var(k).ok())?;
        Ok(Profile {
            keys: profile.keys.filter(|_| need_keys),
            region: profile.region.filter(|_| need_region),
        })
    } else {
        Ok(Profile::default())
    }
}

fn build(
    s: &S3Settings,
    files: &Profile,
    bucket: &str,
    endpoint: Option<&str>,
) -> Result<Arc<dyn Backend>, SettingsError> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_virtual_hosted_style_request(!s.path_style)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
        })
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
                .with_connect_timeout(Duration::from_secs(5))
                // Long enough for a large part; a stream that takes longer
                // is resumed from where it stopped.
                .with_timeout(Duration::from_secs(300)),
        );
    if let Some((id, secret)) = &s.credentials {
        b = b.with_access_key_id(id).with_secret_access_key(secret);
    } else if let Some(keys) = &files.keys {
        b = b
            .with_access_key_id(&keys.id)
            .with_secret_access_key(&keys.secret);
        if let Some(token) = &keys.token {
            b = b.with_token(token);
        }
    }
    if let Some(region) = &s.region {
        b = b.with_region(region);
    } else if let Some(region) = &files.region {
        b = b.with_region(region);
    } else if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        b = b.with_region("us-east-1");
    }
    if let Some(e) = endpoint {
        let e = e.trim_end_matches('/');
        b = b.with_endpoint(if s.path_style {
            e.to_owned()
        } else {
            virtual_host(e, bucket)
        });
    }
    Ok(Arc::new(b.build()?))
}

impl BucketStore {
    /// Connects to the bucket `settings` names (no request is made yet:
    /// see [`BucketStore::check`]).
    pub fn connect(settings: &S3Settings) -> Result<BucketStore, SettingsError> {
        let (bucket, prefix) = parse_url(&settings.url)?;
        let files = shared_files(settings)?;
        let api = build(settings, &files, &bucket, settings.endpoint.as_deref())?;
        let mut store = BucketStore::new(api.clone(), &prefix);
        if let Some(ttl) = settings.redirect {
            let signer = match &settings.public_endpoint {
                Some(public) => build(settings, &files, &bucket, Some(public))?,
                None => api,
            };
            store = store.with_redirects(signer, ttl);
        }
        Ok(store)
    }

    /// Makes one request, so that wrong settings or credentials show at
    /// startup rather than at the first push.
    pub async fn check(&self) -> crate::Result<()> {
        use futures_util::StreamExt;
        let prefix = self.key("blobs");
        match self.bucket.list(Some(&prefix)).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(super::unavailable("list the bucket")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_url, virtual_host};

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://b/p/q/").ok(),
            Some(("b".to_owned(), "p/q".to_owned()))
        );
        assert_eq!(
            parse_url("s3://b").ok(),
            Some(("b".to_owned(), String::new()))
        );
        assert!(parse_url("s3:///x").is_err());
        assert!(parse_url("gs://b").is_err());
        assert_eq!(
            virtual_host("https://s3.example.com:9000", "b"),
            "https://b.s3.example.com:9000"
        );
    }
}
