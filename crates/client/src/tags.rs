//! Tag listing (with `Link` pagination) and referrers.

use berth_oci::{Descriptor, Digest};
use reqwest::header::{ACCEPT, LINK};

use crate::{Client, Error, Repository};

/// Upper bound on followed pages, against a registry that loops.
const MAX_PAGES: usize = 100_000;

/// The `rel="next"` target of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

impl Client {
    /// Every repository of `registry` (`GET /v2/_catalog`, following
    /// pagination; the token scope `registry:catalog:*`). Registries that
    /// keep their catalog private answer 401 or 404.
    pub async fn catalog(&self, registry: &str, page_size: usize) -> Result<Vec<String>, Error> {
        let url = format!("{}/v2/_catalog?n={page_size}", self.base_url(registry));
        let scopes = vec!["registry:catalog:*".to_owned()];
        self.name_pages(registry, &scopes, url, "repositories", "catalog")
            .await
    }

    /// The strings of the JSON array `key` of every page from `url` on,
    /// following `Link: <...>; rel="next"` (the catalog's and tag lists'
    /// pagination).
    async fn name_pages(
        &self,
        registry: &str,
        scopes: &[String],
        mut url: String,
        key: &str,
        what: &str,
    ) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for _ in 0..MAX_PAGES {
            let u = url.clone();
            let resp = self.send(registry, scopes, &|| self.http.get(&u)).await?;
            if !resp.status().is_success() {
                return Err(Error::from_response("GET", resp).await);
            }
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| Error::http(format!("reading the {what}"), e))?;
            if let Some(list) = body.get(key).and_then(|t| t.as_array()) {
                names.extend(list.iter().filter_map(|t| t.as_str()).map(str::to_owned));
            }
            match next {
                Some(n) => url = self.absolute_url(registry, &n),
                None => return Ok(names),
            }
        }
        Err(Error::Protocol(format!("{what} pagination does not end")))
    }
}

impl Repository<'_> {
    /// All tags of the repository, following pagination.
    pub async fn tags(&self, page_size: usize) -> Result<Vec<String>, Error> {
        let url = self.url(&format!("tags/list?n={page_size}"));
        self.client
            .name_pages(self.registry, &self.pull_scope(), url, "tags", "tag list")
            .await
    }

    /// Manifests that refer to `digest` (signatures, SBOMs, ...), optionally
    /// filtered by artifact type. Falls back to the `sha256-<hex>` tag schema
    /// when the registry has no referrers API.
    pub async fn referrers(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        let mut url = self.url(&format!("referrers/{digest}"));
        if let Some(t) = artifact_type {
            url = format!("{url}?artifactType={t}");
        }
        let scopes = self.pull_scope();
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let u = url.clone();
            let resp = self
                .client
                .send(self.registry, &scopes, &|| {
                    self.client
                        .http
                        .get(&u)
                        .header(ACCEPT, berth_oci::media::OCI_INDEX)
                })
                .await?;
            if resp.status().as_u16() == 404 && out.is_empty() {
                return self.referrers_by_tag(digest, artifact_type).await;
            }
            if !resp.status().is_success() {
                return Err(Error::from_response("GET", resp).await);
            }
            let filtered = resp.headers().contains_key("oci-filters-applied");
            let next = resp
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let index: IndexBody = resp
                .json()
                .await
                .map_err(|e| Error::http("reading referrers", e))?;
            out.extend(index.manifests.into_iter().filter(|d| {
                filtered || artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t))
            }));
            match next {
                Some(n) => url = self.absolute(&n),
                None => return Ok(out),
            }
        }
        Err(Error::Protocol(
            "referrers pagination does not end".to_owned(),
        ))
    }

    async fn referrers_by_tag(
        &self,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, Error> {
        let tag = format!("{}-{}", digest.algorithm().as_str(), digest.hex());
        match self.get_manifest(&tag).await {
            Ok(m) => {
                let index: IndexBody = serde_json::from_slice(&m.bytes)
                    .map_err(|e| Error::Protocol(format!("referrers tag {tag}: {e}")))?;
                Ok(index
                    .manifests
                    .into_iter()
                    .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
                    .collect())
            }
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[derive(serde::Deserialize)]
struct IndexBody {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://x/prev>; rel="prev", <https://x/next>; rel="next""#).as_deref(),
            Some("https://x/next")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }
}
