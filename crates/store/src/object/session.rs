//! Upload sessions kept in the bucket (see the parent module for the
//! layout): any replica continues any session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::{Algorithm, Digest};
use futures_util::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::hash::ResumableSha256;
use super::put::Pending;
use super::{gc, unavailable, BucketStore};
use crate::{ByteStream, Error, Result, UploadInfo};

/// How long a claim on a session (by an append uploading parts) holds
/// without being renewed; a claim left by a dead replica expires after it,
/// so its session can be continued through another replica that much
/// later. The append holding it renews it as bytes keep arriving (see
/// [`Append::stream`]), so a slow client does not lose it between parts.
const CLAIM: Duration = Duration::from_secs(30);

/// `uploads/<id>/state.json`.
#[derive(Serialize, Deserialize, Clone)]
struct State {
    label: String,
    started_ms: u64,
    updated_ms: u64,
    /// Bytes received (all hashed, in parts or segments).
    size: u64,
    /// SHA-256 state over those bytes ([`ResumableSha256::save`]).
    sha256: String,
    /// The multipart upload at `uploads/<id>/data`, once a part was needed.
    #[serde(default)]
    multipart: Option<String>,
    #[serde(default)]
    parts: Vec<Part>,
    /// Received bytes not in a part yet, in order.
    #[serde(default)]
    segments: Vec<Segment>,
    /// An append uploading parts holds the session until then.
    #[serde(default)]
    claim: Option<Claim>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Part {
    etag: String,
    size: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Segment {
    name: String,
    size: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Claim {
    by: String,
    until_ms: u64,
}

impl State {
    fn info(&self, id: &str) -> UploadInfo {
        UploadInfo {
            id: id.to_owned(),
            label: self.label.clone(),
            size: self.size,
            started_at: UNIX_EPOCH + Duration::from_millis(self.started_ms),
            updated_at: UNIX_EPOCH + Duration::from_millis(self.updated_ms),
        }
    }

    fn buffered(&self) -> usize {
        self.segments.iter().map(|s| s.size as usize).sum()
    }

    fn claimed_by_other(&self, me: &str, now: u64) -> bool {
        matches!(&self.claim, Some(c) if c.by != me && c.until_ms > now)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn valid_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn corrupt(what: &str) -> Error {
    Error::Io(std::io::Error::other(format!(
        "upload session state is damaged ({what})"
    )))
}

/// The keys of one session.
struct Keys {
    state: Path,
    data: Path,
    dir: String,
}

impl Keys {
    fn new(store: &BucketStore, id: &str) -> Keys {
        let dir = format!("uploads/{id}");
        Keys {
            state: store.key(&format!("{dir}/state.json")),
            data: store.key(&format!("{dir}/data")),
            dir,
        }
    }

    fn segment(&self, store: &BucketStore, name: &str) -> Path {
        store.key(&format!("{}/{name}", self.dir))
    }
}

/// Reads a session's state and the version to update it against.
async fn load(store: &BucketStore, keys: &Keys) -> Result<Option<(State, UpdateVersion)>> {
    let got = match store.bucket.get(&keys.state).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(unavailable("read an upload session")(e)),
    };
    let version = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let raw = got
        .bytes()
        .await
        .map_err(unavailable("read an upload session"))?;
    match serde_json::from_slice::<State>(&raw) {
        Ok(state) => Ok(Some((state, version))),
        Err(_) => Err(corrupt("unreadable state.json")),
    }
}

/// The outcome of a conditional state write.
enum Saved {
    Done(UpdateVersion),
    /// Someone else changed the session since it was read.
    Conflict,
    /// The session is gone (cancelled or committed meanwhile).
    Gone,
}

async fn save(store: &BucketStore, keys: &Keys, state: &State, mode: PutMode) -> Result<Saved> {
    let json = serde_json::to_vec(state).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    let options = PutOptions {
        mode,
        ..PutOptions::default()
    };
    match store
        .bucket
        .put_opts(&keys.state, PutPayload::from(json), options)
        .await
    {
        Ok(r) => Ok(Saved::Done(r.into())),
        Err(object_store::Error::Precondition { .. })
        | Err(object_store::Error::AlreadyExists { .. }) => Ok(Saved::Conflict),
        Err(object_store::Error::NotFound { .. }) => Ok(Saved::Gone),
        Err(e) => Err(unavailable("write an upload session")(e)),
    }
}

pub(super) async fn create(store: &BucketStore, label: &str) -> Result<UploadInfo> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let state = State {
        label: label.to_owned(),
        started_ms: now,
        updated_ms: now,
        size: 0,
        sha256: ResumableSha256::default().save(),
        multipart: None,
        parts: Vec::new(),
        segments: Vec::new(),
        claim: None,
    };
    match save(store, &Keys::new(store, &id), &state, PutMode::Create).await? {
        Saved::Done(_) => Ok(state.info(&id)),
        _ => Err(Error::Io(std::io::Error::other(
            "a fresh upload id was taken",
        ))),
    }
}

pub(super) async fn info(store: &BucketStore, id: &str) -> Result<Option<UploadInfo>> {
    if !valid_id(id) {
        return Ok(None);
    }
    Ok(load(store, &Keys::new(store, id))
        .await?
        .map(|(s, _)| s.info(id)))
}

pub(super) async fn list(store: &BucketStore) -> Result<Vec<UploadInfo>> {
    let prefix = store.key("uploads");
    let mut listing = store.bucket.list(Some(&prefix));
    let mut ids = Vec::new();
    while let Some(item) = listing.next().await {
        let meta = item.map_err(unavailable("list upload sessions"))?;
        let mut parts = meta.location.as_ref().rsplit('/');
        if parts.next() != Some("state.json") {
            continue;
        }
        if let Some(id) = parts.next().filter(|id| valid_id(id)) {
            ids.push(id.to_owned());
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match load(store, &Keys::new(store, &id)).await {
            Ok(Some((state, _))) => out.push(state.info(&id)),
            Ok(None) => {}
            // A damaged session reads as idle since the epoch: the purge
            // removes it.
            Err(Error::Io(_)) => out.push(UploadInfo {
                id,
                label: String::new(),
                size: 0,
                started_at: UNIX_EPOCH,
                updated_at: UNIX_EPOCH,
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One append in progress.
struct Append<'a> {
    store: &'a BucketStore,
    keys: Keys,
    me: String,
    /// The session as read.
    original: State,
    /// The session as this append changes it.
    state: State,
    version: UpdateVersion,
    claimed: bool,
    pending: Pending,
    /// Segments merged into a part by this append (deleted once it is
    /// recorded).
    consumed: Vec<Segment>,
}

pub(super) async fn append(
    store: &BucketStore,
    id: &str,
    start: Option<u64>,
    len: Option<u64>,
    body: ByteStream,
) -> Result<u64> {
    if !valid_id(id) {
        return Err(Error::UploadUnknown);
    }
    let keys = Keys::new(store, id);
    let Some((state, version)) = load(store, &keys).await? else {
        return Err(Error::UploadUnknown);
    };
    let base = state.size;
    if let Some(start) = start {
        if start != base {
            return Err(Error::RangeMismatch { start, size: base });
        }
    }
    let me = uuid::Uuid::new_v4().to_string();
    if state.claimed_by_other(&me, now_ms()) {
        // Another replica is uploading parts of this session right now.
        return Err(Error::RangeMismatch {
            start: start.unwrap_or(base),
            size: base,
        });
    }
    let mut hasher = ResumableSha256::restore(&state.sha256).ok_or_else(|| corrupt("hash"))?;
    let mut a = Append {
        store,
        keys,
        me,
        original: state.clone(),
        state,
        version,
        claimed: false,
        pending: Pending::default(),
        consumed: Vec::new(),
    };
    let received = match a.stream(body, len, &mut hasher).await {
        Ok(n) => n,
        Err(e) => {
            a.unclaim().await;
            return Err(e);
        }
    };
    a.finish(base, start, received, &hasher).await
}

impl Append<'_> {
    /// Reads the body: hashes it, uploads every full part, keeps the rest
    /// in `pending`. Returns the bytes received.
    async fn stream(
        &mut self,
        mut body: ByteStream,
        len: Option<u64>,
        hasher: &mut ResumableSha256,
    ) -> Result<u64> {
        let mut received = 0u64;
        while let Some(item) = body.next().await {
            let chunk = item.map_err(Error::Body)?;
            received += chunk.len() as u64;
            if let Some(l) = len {
                if received > l {
                    return Err(Error::SizeMismatch {
                        expected: l,
                        actual: received,
                    });
                }
            }
            hasher.update(&chunk);
            self.pending.push(chunk);
            if self.claimed {
                // Renews the claim once half of it has passed.
                self.claim().await?;
            }
            while self.state.buffered() + self.pending.len()
                >= self.store.part_len(self.state.parts.len())
            {
                self.upload_part().await?;
            }
        }
        if let Some(l) = len {
            if received != l {
                return Err(Error::SizeMismatch {
                    expected: l,
                    actual: received,
                });
            }
        }
        Ok(received)
    }

    /// Uploads the next part: the buffered segments, then pending bytes.
    async fn upload_part(&mut self) -> Result<()> {
        self.claim().await?;
        if !self.state.segments.is_empty() {
            let mut older = Vec::new();
            for seg in std::mem::take(&mut self.state.segments) {
                let key = self.keys.segment(self.store, &seg.name);
                let got = self
                    .store
                    .bucket
                    .get(&key)
                    .await
                    .map_err(unavailable("read a buffered chunk"))?;
                older.push(
                    got.bytes()
                        .await
                        .map_err(unavailable("read a buffered chunk"))?,
                );
                self.consumed.push(seg);
            }
            self.pending.prepend(older);
        }
        let index = self.state.parts.len();
        let part_len = self.store.part_len(index);
        let Some(upload) = self.state.multipart.clone() else {
            return Err(corrupt("no multipart upload"));
        };
        let payload = self.pending.take(part_len);
        let size = payload.content_length() as u64;
        let part = self
            .store
            .bucket
            .put_part(&self.keys.data, &upload, index, payload)
            .await
            .map_err(unavailable("upload a part"))?;
        self.state.parts.push(Part {
            etag: part.content_id,
            size,
        });
        Ok(())
    }

    /// Takes (or renews) the session for this append before it uploads a
    /// part, starting the multipart upload on the first one: from here on
    /// no other replica uploads parts of it.
    async fn claim(&mut self) -> Result<()> {
        let now = now_ms();
        let renew_at = CLAIM.as_millis() as u64 / 2;
        if self.claimed
            && self
                .state
                .claim
                .as_ref()
                .is_some_and(|c| c.until_ms > now + renew_at)
        {
            return Ok(());
        }
        if self.state.multipart.is_none() {
            let id = self
                .store
                .bucket
                .create_multipart(&self.keys.data)
                .await
                .map_err(unavailable("start a multipart upload"))?;
            self.state.multipart = Some(id);
        }
        // Recorded: the session as read, plus the multipart upload and the
        // claim (this append's parts and merged segments are recorded by
        // its final write).
        let mut claimed = self.original.clone();
        claimed.multipart.clone_from(&self.state.multipart);
        claimed.claim = Some(Claim {
            by: self.me.clone(),
            until_ms: now + CLAIM.as_millis() as u64,
        });
        match save(
            self.store,
            &self.keys,
            &claimed,
            PutMode::Update(self.version.clone()),
        )
        .await?
        {
            Saved::Done(v) => {
                self.version = v;
                self.state.claim = claimed.claim;
                self.claimed = true;
                Ok(())
            }
            Saved::Conflict => Err(Error::RangeMismatch {
                start: self.state.size,
                size: self.current_size().await,
            }),
            Saved::Gone => Err(Error::UploadUnknown),
        }
    }

    /// The session's size as stored now (for a loser's error).
    async fn current_size(&self) -> u64 {
        match load(self.store, &self.keys).await {
            Ok(Some((s, _))) => s.size,
            _ => self.state.size,
        }
    }

    /// Gives the claim back after a failed append (best effort: it
    /// expires anyway). Parts it uploaded are not recorded, so the next
    /// append overwrites them.
    async fn unclaim(&mut self) {
        if !self.claimed {
            return;
        }
        let mut state = self.original.clone();
        state.multipart.clone_from(&self.state.multipart);
        let _ = save(
            self.store,
            &self.keys,
            &state,
            PutMode::Update(self.version.clone()),
        )
        .await;
    }

    /// Records the append: the rest as a new segment, then the state
    /// (only if nobody changed it meanwhile).
    async fn finish(
        mut self,
        base: u64,
        start: Option<u64>,
        received: u64,
        hasher: &ResumableSha256,
    ) -> Result<u64> {
        let mut added: Option<Path> = None;
        if self.pending.len() > 0 {
            let name = format!("seg-{}", uuid::Uuid::new_v4());
            let key = self.keys.segment(self.store, &name);
            let size = self.pending.len() as u64;
            if let Err(e) = self.store.bucket.put(&key, self.pending.take_all()).await {
                self.unclaim().await;
                return Err(unavailable("buffer a chunk")(e));
            }
            self.state.segments.push(Segment { name, size });
            added = Some(key);
        }
        self.state.size = base + received;
        self.state.sha256 = hasher.save();
        self.state.updated_ms = now_ms();
        self.state.claim = None;
        let outcome = save(
            self.store,
            &self.keys,
            &self.state,
            PutMode::Update(self.version.clone()),
        )
        .await;
        match outcome {
            Ok(Saved::Done(_)) => {}
            other => {
                if let Some(key) = &added {
                    let _ = self.store.remove(key).await;
                }
                return match other {
                    Ok(Saved::Conflict) => Err(Error::RangeMismatch {
                        start: start.unwrap_or(base),
                        size: self.current_size().await,
                    }),
                    Ok(_) => Err(Error::UploadUnknown),
                    Err(e) => Err(e),
                };
            }
        }
        for seg in &self.consumed {
            let key = self.keys.segment(self.store, &seg.name);
            if let Err(e) = self.store.remove(&key).await {
                tracing::warn!(error = %e, "removing a merged chunk failed");
            }
        }
        Ok(self.state.size)
    }
}

pub(super) async fn commit(store: &BucketStore, id: &str, expected: &Digest) -> Result<u64> {
    if !valid_id(id) {
        return Err(Error::UploadUnknown);
    }
    let keys = Keys::new(store, id);
    let Some((state, _)) = load(store, &keys).await? else {
        return Err(Error::UploadUnknown);
    };
    if expected.algorithm() == Algorithm::Sha256 {
        let actual = ResumableSha256::restore(&state.sha256)
            .ok_or_else(|| corrupt("hash"))?
            .digest();
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    let source = assemble(store, &keys, state.clone()).await?;
    if expected.algorithm() != Algorithm::Sha256 {
        // The session kept no SHA-512 state: hash its content once.
        let actual = match &source {
            Some(key) => hash_object(store, key, expected.algorithm()).await?,
            None => Digest::compute(expected.algorithm(), b""),
        };
        if &actual != expected {
            return Err(Error::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    let blob = store.blob_key(expected);
    match &source {
        Some(key) => store.copy_object(key, &blob, state.size).await?,
        None => {
            store
                .bucket
                .put(&blob, PutPayload::default())
                .await
                .map_err(unavailable("store a blob"))?;
        }
    }
    gc::after_publish(store, expected, source.as_ref().map(|k| (k, state.size))).await?;
    remove_session(store, &keys).await?;
    Ok(state.size)
}

/// Brings a session's bytes into one object (completing its multipart
/// upload, or joining its segments) and records that in its state, so a
/// failed commit leaves a session that still holds them. `None` for an
/// empty session.
async fn assemble(store: &BucketStore, keys: &Keys, mut state: State) -> Result<Option<Path>> {
    if state.multipart.is_none() {
        match state.segments.as_slice() {
            [] => return Ok(None),
            [one] => return Ok(Some(keys.segment(store, &one.name))),
            _ => {}
        }
    }
    let mut rest = Vec::new();
    for seg in &state.segments {
        let key = keys.segment(store, &seg.name);
        let got = store
            .bucket
            .get(&key)
            .await
            .map_err(unavailable("read a buffered chunk"))?;
        rest.push(
            got.bytes()
                .await
                .map_err(unavailable("read a buffered chunk"))?,
        );
    }
    let mut pending = Pending::default();
    pending.prepend(rest);
    match state.multipart.clone() {
        None => {
            store
                .bucket
                .put(&keys.data, pending.take_all())
                .await
                .map_err(unavailable("join buffered chunks"))?;
        }
        Some(upload) => {
            let mut parts: Vec<PartId> = state
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.etag.clone(),
                })
                .collect();
            if pending.len() > 0 || parts.is_empty() {
                let part = store
                    .bucket
                    .put_part(&keys.data, &upload, parts.len(), pending.take_all())
                    .await
                    .map_err(unavailable("upload the last part"))?;
                parts.push(part);
            }
            if let Err(e) = store
                .bucket
                .complete_multipart(&keys.data, &upload, parts)
                .await
            {
                // Completed by an earlier attempt that died before it
                // recorded so: the object is there, whole.
                match store.head(&keys.data).await? {
                    Some((size, _)) if size == state.size => {}
                    _ => return Err(unavailable("complete a multipart upload")(e)),
                }
            }
        }
    }
    let joined = std::mem::take(&mut state.segments);
    state.multipart = None;
    state.parts.clear();
    state.segments.push(Segment {
        name: "data".to_owned(),
        size: state.size,
    });
    if let Saved::Done(_) = save(store, keys, &state, PutMode::Overwrite).await? {
        for seg in joined {
            let _ = store.remove(&keys.segment(store, &seg.name)).await;
        }
    }
    Ok(Some(keys.data.clone()))
}

/// Hashes an object by reading it (SHA-512 sessions only).
async fn hash_object(store: &BucketStore, key: &Path, algorithm: Algorithm) -> Result<Digest> {
    let got = store
        .bucket
        .get(key)
        .await
        .map_err(unavailable("read an upload for hashing"))?;
    let mut h = algorithm.hasher();
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk.map_err(unavailable("read an upload for hashing"))?);
    }
    Ok(h.finish())
}

/// Removes everything of a session, its state last (so a session whose
/// removal was interrupted is still listed, and purged again).
async fn remove_session(store: &BucketStore, keys: &Keys) -> Result<()> {
    let prefix = store.key(&keys.dir);
    let mut listing = store.bucket.list(Some(&prefix));
    let mut others = Vec::new();
    while let Some(item) = listing.next().await {
        let meta = item.map_err(unavailable("list an upload session"))?;
        if meta.location != keys.state {
            others.push(meta.location);
        }
    }
    for key in others {
        store.remove(&key).await?;
    }
    store.remove(&keys.state).await
}

pub(super) async fn cancel(store: &BucketStore, id: &str) -> Result<bool> {
    if !valid_id(id) {
        return Ok(false);
    }
    let keys = Keys::new(store, id);
    let Some((state, _)) = load(store, &keys).await? else {
        return Ok(false);
    };
    if let Some(upload) = &state.multipart {
        match store.bucket.abort_multipart(&keys.data, upload).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(unavailable("abort a multipart upload")(e)),
        }
    }
    remove_session(store, &keys).await?;
    Ok(true)
}
