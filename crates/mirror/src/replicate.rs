//! Replication's transport: copies images between this registry and a
//! rule's other registry with the engine of `berth copy`
//! (`berth_tools::copy::copy_image`): every platform, manifests moved as
//! bytes (digests preserved), blobs the destination has skipped. The
//! other registry is reached through `berth_client` (Basic or the token
//! flow with the rule's credentials), this one through its services
//! ([`crate::local`]).
//!
//! Before copying, the destination's tag is compared with the source's:
//! equal, nothing is transferred.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_client::{Client, ClientOptions, Credential, CredentialStore};
use berth_oci::manifest::Manifest;
use berth_oci::reference::ImageRef;
use berth_oci::{Digest, Reference, RepositoryName, Tag};
use berth_registry::replication::{
    selects_tag, Copied, Deleted, Deletion, Direction, ReplicationRule, Transport,
};
use berth_registry::{Caller, Registry};
use berth_tools::copy::progress::Silent;
use berth_tools::copy::remote::RemoteRepository;
use berth_tools::copy::{copy_image, CopyOptions, Destination, Source};

use crate::local::LocalRepository;

/// The replication transport of one registry.
pub struct Replicator {
    registry: Arc<Registry>,
    /// A client per rule (keeping its tokens), with what it was built
    /// from: a changed rule gets a new one.
    clients: Mutex<HashMap<i64, (String, Arc<Client>)>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator").finish_non_exhaustive()
    }
}

/// The `host[:port]` of a rule's URL and whether it is plain HTTP.
fn host_of(url: &str) -> Result<(String, bool), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    let host = u
        .host_str()
        .ok_or_else(|| format!("url {url:?} has no host"))?;
    let host = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok((host, u.scheme() == "http"))
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Replicator {
    /// The transport over `registry`'s services.
    pub fn new(registry: Arc<Registry>) -> Replicator {
        Replicator {
            registry,
            clients: Mutex::default(),
        }
    }

    /// The client for `rule`'s registry and its `host[:port]`.
    fn client(&self, rule: &ReplicationRule) -> Result<(Arc<Client>, String), String> {
        let (host, plain) = host_of(&rule.url)?;
        let key = format!(
            "{}\n{}\n{}",
            rule.url,
            rule.username.as_deref().unwrap_or(""),
            rule.secret.as_ref().map_or("", |s| s.0.as_str())
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, c)) = clients.get(&rule.id) {
            if *k == key {
                return Ok((c.clone(), host));
            }
        }
        let mut credentials = CredentialStore::new();
        if let (Some(u), Some(p)) = (&rule.username, &rule.secret) {
            credentials.insert(
                &host,
                Credential {
                    username: u.clone(),
                    password: p.0.clone(),
                },
            );
        }
        let client = Arc::new(
            Client::new(ClientOptions {
                credentials,
                plain_http: if plain {
                    vec![host.clone()]
                } else {
                    Vec::new()
                },
                user_agent: Some(format!("berth-replication/{}", env!("CARGO_PKG_VERSION"))),
                ..ClientOptions::default()
            })
            .map_err(|e| chain(&e))?,
        );
        clients.insert(rule.id, (key, client.clone()));
        Ok((client, host))
    }

    fn local(&self, rule: &ReplicationRule, repo: &RepositoryName) -> LocalRepository {
        LocalRepository {
            registry: self.registry.clone(),
            repo: repo.clone(),
            caller: Caller::system(&format!("replication/{}", rule.name)),
        }
    }

    /// The digest `tag` names here, if it exists.
    async fn local_digest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>, String> {
        match self
            .registry
            .get_manifest(repo, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(m) => Ok(Some(m.digest.clone())),
            Err(
                berth_registry::Error::ManifestUnknown(_) | berth_registry::Error::NameUnknown(_),
            ) => Ok(None),
            Err(e) => Err(format!("reading {repo}:{tag} here: {e}")),
        }
    }

    /// The digest `tag` names at the other registry, if it exists.
    async fn remote_digest(
        client: &Client,
        host: &str,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<Digest>, String> {
        let r = client.repository(host, repo.as_str());
        match r.head_manifest(tag.as_str()).await {
            Ok(Some((Some(d), _))) => Ok(Some(d)),
            // No digest header: ask for the bytes.
            Ok(Some((None, _))) => match r.get_manifest(tag.as_str()).await {
                Ok(m) => Ok(Some(m.digest)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(chain(&e)),
            },
            Ok(None) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(chain(&e)),
        }
    }
}

/// The index children of a manifest (none for an image).
fn children(bytes: &[u8], media_type: &str) -> Vec<Digest> {
    Manifest::parse(bytes, Some(media_type))
        .map(|m| m.child_manifests().map(|d| d.digest.clone()).collect())
        .unwrap_or_default()
}

/// Levels of referrers followed (a signature of an SBOM of an image).
const REFERRER_DEPTH: usize = 2;

impl Replicator {
    /// The referrers here of `subjects` (one level).
    async fn local_referrers(
        &self,
        repo: &RepositoryName,
        subjects: &[Digest],
    ) -> Result<Vec<Digest>, String> {
        let mut out = Vec::new();
        for s in subjects {
            let index = self
                .registry
                .referrers(repo, s, None)
                .await
                .map_err(|e| format!("listing the referrers of {repo}@{s} here: {e}"))?;
            out.extend(
                index
                    .manifests
                    .iter()
                    .filter_map(|m| m["digest"].as_str())
                    .filter_map(|d| Digest::parse(d).ok()),
            );
        }
        Ok(out)
    }

    /// The referrers of `subjects` at the other registry (one level; its
    /// referrers API, else the `sha256-<hex>` tags).
    async fn remote_referrers(
        client: &Client,
        host: &str,
        repo: &RepositoryName,
        subjects: &[Digest],
    ) -> Result<Vec<Digest>, String> {
        let there = client.repository(host, repo.as_str());
        let mut out = Vec::new();
        for s in subjects {
            let found = there
                .referrers(s, None)
                .await
                .map_err(|e| format!("listing the referrers of {repo}@{s}: {}", chain(&e)))?;
            out.extend(found.into_iter().map(|d| d.digest));
        }
        Ok(out)
    }

    /// Copies manifest `digest` from the other registry here, by digest.
    async fn pull_manifest(
        &self,
        rule: &ReplicationRule,
        client: &Arc<Client>,
        host: &str,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Copied, String> {
        match self
            .registry
            .get_manifest(repository, &Reference::Digest(digest.clone()))
            .await
        {
            Ok(_) => return Ok(Copied::UpToDate(digest.clone())),
            Err(
                berth_registry::Error::ManifestUnknown(_) | berth_registry::Error::NameUnknown(_),
            ) => {}
            Err(e) => return Err(format!("reading {repository}@{digest} here: {e}")),
        }
        self.copy_digest(rule, client, host, repository, digest, false)
            .await
    }

    /// Copies manifest `digest` of `repository` by digest, with what it
    /// references, from here to the other registry (`push`) or back.
    async fn copy_digest(
        &self,
        rule: &ReplicationRule,
        client: &Arc<Client>,
        host: &str,
        repository: &RepositoryName,
        digest: &Digest,
        push: bool,
    ) -> Result<Copied, String> {
        let remote = RemoteRepository::new(
            client.clone(),
            &ImageRef {
                registry: host.to_owned(),
                repository: repository.as_str().to_owned(),
                tag: None,
                digest: Some(digest.clone()),
                explicit_registry: true,
            },
        );
        let local = self.local(rule, repository);
        let (src, dst): (&dyn Source, &dyn Destination) = if push {
            (&local, &remote)
        } else {
            (&remote, &local)
        };
        let progress: Arc<dyn berth_tools::copy::progress::Progress> = Arc::new(Silent);
        copy_image(
            src,
            Some(digest.as_str()),
            dst,
            None,
            &CopyOptions::default(),
            &progress,
        )
        .await
        .map_err(|e| chain(&e))?;
        dst.finish().await.map_err(|e| chain(&e))?;
        Ok(Copied::Copied(digest.clone()))
    }

    /// The tags of `repository` at the other registry that name `digest`
    /// (each tag asked with a `HEAD`).
    async fn tags_naming(
        client: &Client,
        host: &str,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<String>, String> {
        let there = client.repository(host, repository.as_str());
        let tags = match there.tags(1000).await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(chain(&e)),
        };
        let mut out = Vec::new();
        for t in tags {
            let Ok(tag) = Tag::parse(&t) else { continue };
            if Self::remote_digest(client, host, repository, &tag)
                .await?
                .as_ref()
                == Some(digest)
            {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// Whether an error is a registry refusing a kind of deletion (rather
/// than failing).
fn unsupported(e: &berth_client::Error) -> bool {
    matches!(e.status(), Some(400 | 405))
}

#[async_trait]
impl Transport for Replicator {
    async fn copy(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Copied, String> {
        let (client, host) = self.client(rule)?;
        let remote = RemoteRepository::new(
            client.clone(),
            &ImageRef {
                registry: host.clone(),
                repository: repository.as_str().to_owned(),
                tag: Some(tag.as_str().to_owned()),
                digest: None,
                explicit_registry: true,
            },
        );
        let local = self.local(rule, repository);
        let push = Direction::parse(&rule.direction) != Some(Direction::Pull);
        let (source, destination) = if push {
            (
                self.local_digest(repository, tag).await?,
                Self::remote_digest(&client, &host, repository, tag).await?,
            )
        } else {
            (
                Self::remote_digest(&client, &host, repository, tag).await?,
                self.local_digest(repository, tag).await?,
            )
        };
        let Some(source) = source else {
            return Err(format!("{repository}:{tag} no longer exists at the source"));
        };
        if destination.as_ref() == Some(&source) {
            return Ok(Copied::UpToDate(source));
        }
        let (src, dst): (&dyn Source, &dyn Destination) = if push {
            (&local, &remote)
        } else {
            (&remote, &local)
        };
        let progress: Arc<dyn berth_tools::copy::progress::Progress> = Arc::new(Silent);
        let report = copy_image(
            src,
            Some(tag.as_str()),
            dst,
            Some(tag.as_str()),
            &CopyOptions::default(),
            &progress,
        )
        .await
        .map_err(|e| chain(&e))?;
        dst.finish().await.map_err(|e| chain(&e))?;
        Ok(Copied::Copied(report.digest.unwrap_or(source)))
    }

    async fn copy_manifest(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Copied, String> {
        if Direction::parse(&rule.direction) == Some(Direction::Pull) {
            return Err("a pull rule copies tags, not manifests by digest".into());
        }
        let (client, host) = self.client(rule)?;
        let there = client.repository(&host, repository.as_str());
        match there.head_manifest(digest.as_str()).await {
            Ok(Some(_)) => return Ok(Copied::UpToDate(digest.clone())),
            Ok(None) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(chain(&e)),
        }
        self.copy_digest(rule, &client, &host, repository, digest, true)
            .await
    }

    async fn copy_referrers(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Copied>, String> {
        let push = Direction::parse(&rule.direction) != Some(Direction::Pull);
        let (client, host) = self.client(rule)?;
        let mut subjects = vec![digest.clone()];
        if push {
            let m = self
                .registry
                .get_manifest(repository, &Reference::Digest(digest.clone()))
                .await
                .map_err(|e| format!("reading {repository}@{digest} here: {e}"))?;
            subjects.extend(children(&m.content, &m.media_type));
        } else {
            let m = client
                .repository(&host, repository.as_str())
                .get_manifest(digest.as_str())
                .await
                .map_err(|e| chain(&e))?;
            subjects.extend(children(&m.bytes, &m.media_type));
        }
        let mut seen: std::collections::HashSet<Digest> = subjects.iter().cloned().collect();
        let mut out = Vec::new();
        for _ in 0..REFERRER_DEPTH {
            let found = if push {
                self.local_referrers(repository, &subjects).await?
            } else {
                Self::remote_referrers(&client, &host, repository, &subjects).await?
            };
            subjects = Vec::new();
            for d in found {
                if !seen.insert(d.clone()) {
                    continue;
                }
                out.push(if push {
                    self.copy_manifest(rule, repository, &d).await?
                } else {
                    self.pull_manifest(rule, &client, &host, repository, &d)
                        .await?
                });
                subjects.push(d);
            }
            if subjects.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
        deletion: &Deletion,
    ) -> Result<Deleted, String> {
        if Direction::parse(&rule.direction) == Some(Direction::Pull) {
            return Err("a pull rule deletes here, not at its source".into());
        }
        let (client, host) = self.client(rule)?;
        let there = client.repository(&host, repository.as_str());
        match deletion {
            Deletion::Tag(tag) | Deletion::TagNaming(tag, _) => {
                let Some(digest) = Self::remote_digest(&client, &host, repository, tag).await?
                else {
                    return Ok(Deleted::Absent);
                };
                if let Deletion::TagNaming(_, put) = deletion {
                    if *put != digest {
                        return Ok(Deleted::Kept(format!(
                            "it names {digest} at {host} now, not {put}, which the rule put there"
                        )));
                    }
                }
                match there.delete_tag(tag.as_str()).await {
                    Ok(()) => Ok(Deleted::Deleted),
                    Err(e) if e.is_not_found() => Ok(Deleted::Absent),
                    // A registry that deletes only by digest: the manifest,
                    // when no other tag names it there.
                    Err(e) if unsupported(&e) => {
                        let others: Vec<String> =
                            Self::tags_naming(&client, &host, repository, &digest)
                                .await?
                                .into_iter()
                                .filter(|t| t != tag.as_str())
                                .collect();
                        if !others.is_empty() {
                            return Ok(Deleted::Kept(format!(
                                "{host} deletes manifests only, not tags, and {} name(s) the \
                                 same manifest there",
                                others.join(", ")
                            )));
                        }
                        match there.delete_manifest(&digest).await {
                            Ok(()) => Ok(Deleted::Deleted),
                            Err(e) if e.is_not_found() => Ok(Deleted::Absent),
                            Err(e) => Err(chain(&e)),
                        }
                    }
                    Err(e) => Err(chain(&e)),
                }
            }
            Deletion::Manifest(digest) => {
                match there.head_manifest(digest.as_str()).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(Deleted::Absent),
                    Err(e) if e.is_not_found() => return Ok(Deleted::Absent),
                    Err(e) => return Err(chain(&e)),
                }
                let outside: Vec<String> = Self::tags_naming(&client, &host, repository, digest)
                    .await?
                    .into_iter()
                    .filter(|t| !selects_tag(rule, t))
                    .collect();
                if !outside.is_empty() {
                    return Ok(Deleted::Kept(format!(
                        "{} name(s) it there, outside the rule's tag filter {:?}",
                        outside.join(", "),
                        rule.tags
                    )));
                }
                match there.delete_manifest(digest).await {
                    Ok(()) => Ok(Deleted::Deleted),
                    Err(e) if e.is_not_found() => Ok(Deleted::Absent),
                    Err(e) => Err(format!(
                        "{}{}",
                        chain(&e),
                        if unsupported(&e) {
                            " (the registry refuses deletions; the reference registry needs \
                             storage.delete.enabled)"
                        } else {
                            ""
                        }
                    )),
                }
            }
        }
    }

    async fn remote_repositories(&self, rule: &ReplicationRule) -> Result<Vec<String>, String> {
        let exact =
            !berth_registry::glob::is_glob(&rule.repositories) && rule.repositories.contains('/');
        if exact {
            return Ok(vec![rule.repositories.clone()]);
        }
        let (client, host) = self.client(rule)?;
        client.catalog(&host, 1000).await.map_err(|e| {
            format!(
                "listing the repositories of {} (its catalog): {}; name one repository exactly \
                 in the rule if the registry keeps its catalog private",
                rule.url,
                chain(&e)
            )
        })
    }

    async fn remote_tags(
        &self,
        rule: &ReplicationRule,
        repository: &RepositoryName,
    ) -> Result<Vec<String>, String> {
        let (client, host) = self.client(rule)?;
        match client
            .repository(&host, repository.as_str())
            .tags(1000)
            .await
        {
            Ok(t) => Ok(t),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(format!(
                "listing the tags of {repository} at {}: {}",
                rule.url,
                chain(&e)
            )),
        }
    }
}
