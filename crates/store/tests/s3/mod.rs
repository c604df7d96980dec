//! The object store, on a SeaweedFS server that checks SigV4 signatures:
//! the whole suite, then what only an object store has (sessions shared by
//! replicas, multipart parts, concurrent appends, quarantines left by a
//! dead collector, refused credentials).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use berth_oci::{Algorithm, Digest};
use berth_store::object::S3Settings;
use berth_store::{BlobStore, BucketStore, Error};

use super::weed::{Weed, ACCESS_KEY, BUCKET, SECRET_KEY};
use super::{owned, read_all, run_suite, stream};

/// One server per test binary, stopped when the binary exits.
fn weed() -> &'static Weed {
    static WEED: OnceLock<Weed> = OnceLock::new();
    WEED.get_or_init(Weed::start)
}

fn settings(prefix: &str, secret: &str) -> S3Settings {
    S3Settings {
        url: format!("s3://{BUCKET}/{prefix}"),
        endpoint: Some(weed().endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        path_style: true,
        credentials: Some((ACCESS_KEY.to_owned(), secret.to_owned())),
        ..S3Settings::default()
    }
}

/// A store on its own prefix of the shared bucket (tests run in parallel).
fn store(prefix: &str) -> BucketStore {
    BucketStore::connect(&settings(prefix, SECRET_KEY)).unwrap()
}

/// Deterministic bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn chunk(bytes: &[u8]) -> berth_store::ByteStream {
    owned(bytes.to_vec())
}

#[tokio::test]
async fn s3_store_passes_the_suite() {
    let s = store("suite");
    s.check().await.unwrap();
    run_suite(Arc::new(s), Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused() {
    let bad = BucketStore::connect(&settings("refused", "not-the-secret")).unwrap();
    let err = bad.check().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let d = Digest::sha256(b"x");
    assert!(matches!(
        bad.put(&d, None, stream(vec![b"x"])).await,
        Err(Error::Unavailable { .. })
    ));
    // The right key works on the same server.
    store("refused").check().await.unwrap();
}

/// A session whose chunks (mostly below the part size) go to different
/// replicas, one of them started after the others (a restart), grows
/// past several parts and commits with the right digest.
#[tokio::test]
async fn a_session_moves_between_replicas_and_spans_parts() {
    let replicas = [store("replicas"), store("replicas")];
    let blob = data(19 << 20, 7);
    let up = replicas[0].upload_create("r/a").await.unwrap();
    let mut at = 0usize;
    let sizes = [1 << 20, 3 << 20, 700_000, 6 << 20, 2 << 20, 9 << 20];
    for (i, n) in sizes.iter().cycle().enumerate() {
        if at == blob.len() {
            break;
        }
        let end = (at + n).min(blob.len());
        let r = &replicas[i % 2];
        let size = r
            .upload_append(
                &up.id,
                Some(at as u64),
                Some((end - at) as u64),
                chunk(&blob[at..end]),
            )
            .await
            .unwrap();
        assert_eq!(size, end as u64);
        at = end;
    }
    // A replica started now continues and commits.
    let fresh = store("replicas");
    assert_eq!(
        fresh.upload_info(&up.id).await.unwrap().unwrap().size,
        blob.len() as u64
    );
    let d = Digest::sha256(&blob);
    assert!(matches!(
        fresh.upload_commit(&up.id, &Digest::sha256(b"no")).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(
        fresh.upload_commit(&up.id, &d).await.unwrap(),
        blob.len() as u64
    );
    assert_eq!(read_all(&replicas[1], &d, None).await, blob);
    assert_eq!(
        read_all(&replicas[0], &d, Some((10 << 20, 1000))).await,
        &blob[10 << 20..(10 << 20) + 1000]
    );
    assert!(fresh.upload_info(&up.id).await.unwrap().is_none());
}

/// Two replicas append to the same offset at once: one wins, the other is
/// told where the upload stands, and the content is the winner's.
#[tokio::test]
async fn concurrent_appends_leave_one_winner() {
    let (a, b) = (store("race"), store("race"));
    for len in [1000usize, 9 << 20] {
        let up = a.upload_create("r/race").await.unwrap();
        let (x, y) = (data(len, 1), data(len, 2));
        let (ra, rb) = tokio::join!(
            a.upload_append(&up.id, Some(0), None, chunk(&x)),
            b.upload_append(&up.id, Some(0), None, chunk(&y)),
        );
        let winner = match (&ra, &rb) {
            (Ok(_), Err(Error::RangeMismatch { .. })) => &x,
            (Err(Error::RangeMismatch { .. }), Ok(_)) => &y,
            other => panic!("one append must win, the other lose: {other:?}"),
        };
        let d = Digest::sha256(winner);
        assert_eq!(a.upload_commit(&up.id, &d).await.unwrap(), len as u64);
        assert_eq!(&read_all(&b, &d, None).await, winner);
    }
}

/// A blob larger than a part, pushed in one request, is verified while
/// streaming: a wrong digest leaves nothing under either digest.
#[tokio::test]
async fn large_puts_are_multipart_and_verified() {
    let s = store("bigput");
    let blob = data(17 << 20, 3);
    let d = Digest::sha256(&blob);
    let wrong = Digest::sha256(b"something else");
    assert!(matches!(
        s.put(&wrong, None, chunk(&blob)).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(s.stat(&wrong).await.unwrap(), None);
    assert_eq!(s.stat(&d).await.unwrap(), None);
    assert_eq!(
        s.put(&d, Some(blob.len() as u64), chunk(&blob))
            .await
            .unwrap(),
        blob.len() as u64
    );
    assert_eq!(read_all(&s, &d, None).await, blob);
}

/// SHA-512 sessions (no persisted state) verify at commit.
#[tokio::test]
async fn sha512_sessions_commit() {
    let s = store("sha512");
    let blob = data(6 << 20, 9);
    let up = s.upload_create("r/512").await.unwrap();
    s.upload_append(&up.id, None, None, chunk(&blob[..1000]))
        .await
        .unwrap();
    s.upload_append(&up.id, None, None, chunk(&blob[1000..]))
        .await
        .unwrap();
    let d = Digest::compute(Algorithm::Sha512, &blob);
    assert!(matches!(
        s.upload_commit(&up.id, &Digest::compute(Algorithm::Sha512, b"x"))
            .await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(
        s.upload_commit(&up.id, &d).await.unwrap(),
        blob.len() as u64
    );
    assert_eq!(read_all(&s, &d, None).await, blob);
}

/// A quarantine whose collector died is put back by the next replica that
/// recovers, and a cancelled session with parts is gone.
#[tokio::test]
async fn dead_collectors_and_cancelled_sessions_leave_nothing_behind() {
    let s = store("leftovers");
    let d = Digest::sha256(b"kept");
    s.put(&d, None, stream(vec![b"kept"])).await.unwrap();
    s.quarantine(&d).await.unwrap().unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), None);
    // The collector dies here; a young lock is left alone...
    let other = store("leftovers");
    assert_eq!(
        other
            .recover_quarantines(Duration::from_secs(600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.stat(&d).await.unwrap(), None);
    // ...an old one is undone.
    assert_eq!(other.recover_quarantines(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(read_all(&s, &d, None).await, b"kept");

    let up = s.upload_create("r/c").await.unwrap();
    s.upload_append(&up.id, None, None, chunk(&data(11 << 20, 4)))
        .await
        .unwrap();
    assert!(s.upload_cancel(&up.id).await.unwrap());
    assert!(s.upload_info(&up.id).await.unwrap().is_none());
    assert!(s.upload_list().await.unwrap().iter().all(|u| u.id != up.id));
}

/// The bucket itself, without berth's layer (to play a replica that died).
fn raw_bucket() -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&weed().endpoint)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_allow_http(true)
        .build()
        .unwrap()
}

/// Multipart uploads nobody owns (started by a replica that died before
/// recording them) are aborted by the sweep once older than its grace;
/// a live session's multipart upload is left alone and completes.
#[tokio::test]
async fn orphaned_multipart_uploads_are_swept() {
    use object_store::multipart::MultipartStore;
    use object_store::path::Path;

    let s = store("orphans");
    let raw = raw_bucket();
    let digest_key = Path::from(format!("orphans/blobs/sha256/ab/{}", "ab".repeat(32)));
    let session_key = Path::from("orphans/uploads/0c5ee3a4-5bd4-4c3c-8f5c-7b7e3b0c7e11/data");
    let mut orphans = Vec::new();
    for key in [&digest_key, &session_key] {
        let id = raw.create_multipart(key).await.unwrap();
        raw.put_part(key, &id, 0, vec![7u8; 1000].into())
            .await
            .unwrap();
        orphans.push((key.clone(), id));
    }
    // Another prefix's upload is not this store's business.
    let foreign = Path::from("orphans-other/blobs/x");
    let foreign_id = raw.create_multipart(&foreign).await.unwrap();

    // A live session with a part uploaded: its multipart upload is open.
    let live = s.upload_create("team/live").await.unwrap();
    let bytes = data(9 << 20, 4);
    s.upload_append(&live.id, Some(0), None, chunk(&bytes))
        .await
        .unwrap();

    // Younger than the grace: nothing goes.
    assert_eq!(
        s.sweep_orphaned_uploads(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(s.sweep_orphaned_uploads(Duration::ZERO).await.unwrap(), 2);
    for (key, id) in &orphans {
        let again = raw.put_part(key, id, 1, vec![1u8; 10].into()).await;
        assert!(again.is_err(), "{key} was aborted");
    }
    raw.put_part(&foreign, &foreign_id, 0, vec![1u8; 10].into())
        .await
        .unwrap();
    raw.abort_multipart(&foreign, &foreign_id).await.unwrap();
    // The live session completes whole.
    let digest = Digest::compute(Algorithm::Sha256, &bytes);
    assert_eq!(
        s.upload_commit(&live.id, &digest).await.unwrap(),
        bytes.len() as u64
    );
    assert_eq!(read_all(&s, &digest, None).await, bytes);
    // Nothing is left to sweep.
    assert_eq!(s.sweep_orphaned_uploads(Duration::ZERO).await.unwrap(), 0);
}
