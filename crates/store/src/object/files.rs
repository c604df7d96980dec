//! Plain objects beside the blobs, under `<prefix>/<dir>/`: what is named
//! rather than content-addressed, such as a backup's index and metadata
//! snapshot (`berth backup s3://...`). Written whole (a large file as a
//! multipart upload), read whole or into a file.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::{unavailable, Backend, BucketStore};
use crate::Result;

/// Named objects under one directory of a bucket store's prefix.
pub struct Objects {
    bucket: Arc<dyn Backend>,
    dir: String,
}

impl BucketStore {
    /// The named objects under `<prefix>/<dir>/`.
    pub fn objects(&self, dir: &str) -> Objects {
        Objects {
            bucket: self.bucket.clone(),
            dir: self.key(dir.trim_matches('/')).to_string(),
        }
    }
}

impl Objects {
    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{}", self.dir, name.trim_matches('/')))
    }

    /// Writes `name` (`a/b` is a name under the sub-directory `a`).
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.bucket
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(unavailable("write an object"))?;
        Ok(())
    }

    /// Writes the local file `file` as `name`, streamed.
    pub async fn put_file(&self, name: &str, file: &std::path::Path) -> Result<()> {
        let store: Arc<dyn ObjectStore> = self.bucket.clone();
        let mut writer = object_store::buffered::BufWriter::new(store, self.path(name));
        let mut from = tokio::fs::File::open(file).await?;
        tokio::io::copy(&mut from, &mut writer).await?;
        writer.shutdown().await?;
        Ok(())
    }

    /// Reads `name` whole; `None` when there is no such object.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>> {
        match self.bucket.get(&self.path(name)).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(unavailable("read an object"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("read an object")(e)),
        }
    }

    /// Copies `name` into the local file `file` (created or truncated, then
    /// synced); `false` when there is no such object.
    pub async fn get_to_file(&self, name: &str, file: &std::path::Path) -> Result<bool> {
        let read = match self.bucket.get(&self.path(name)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(unavailable("read an object")(e)),
        };
        let mut stream = read.into_stream();
        let mut to = tokio::fs::File::create(file).await?;
        while let Some(chunk) = stream.next().await {
            to.write_all(&chunk.map_err(unavailable("read an object"))?)
                .await?;
        }
        to.sync_all().await?;
        Ok(true)
    }

    /// The names of the sub-directories (`a` for an object `a/b`).
    pub async fn dirs(&self) -> Result<Vec<String>> {
        let listing = self
            .bucket
            .list_with_delimiter(Some(&Path::from(self.dir.as_str())))
            .await
            .map_err(unavailable("list objects"))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }
}
