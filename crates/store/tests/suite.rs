//! The storage test suite. Every `BlobStore` implementation must pass it;
//! `run_suite` is written against the trait only, so a new driver just adds
//! one `#[tokio::test]` that calls it. The filesystem store runs it on a
//! temporary directory, the object store on a SeaweedFS server started for
//! this test binary (`s3.rs`).

#![allow(clippy::unwrap_used)]

mod s3;
#[path = "support/weed.rs"]
mod weed;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Algorithm, Digest};
use berth_store::{BlobBody, BlobStore, ByteStream, Error, FsStore, Staged};
use bytes::Bytes;
use futures_util::StreamExt;

fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, io::Error>(Bytes::from_static(c))),
    ))
}

fn owned(data: Vec<u8>) -> ByteStream {
    Box::pin(futures_util::stream::iter(
        data.chunks(64 * 1024)
            .map(|c| Ok::<_, io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ))
}

async fn read_all(store: &dyn BlobStore, d: &Digest, range: Option<(u64, u64)>) -> Vec<u8> {
    let read = store.read(d, range).await.unwrap().expect("blob exists");
    let out = match read.body {
        BlobBody::Bytes(b) => b.to_vec(),
        BlobBody::Stream(mut s) => {
            let mut v = Vec::new();
            while let Some(c) = s.next().await {
                v.extend_from_slice(&c.unwrap());
            }
            v
        }
    };
    assert_eq!(out.len() as u64, read.len);
    out
}

/// Runs every case against `store`. `clock` is the resolution of the
/// store's modification times (S3 reports whole seconds).
async fn run_suite(store: Arc<dyn BlobStore>, clock: Duration) {
    // put + stat + read, small and large.
    let small = Digest::sha256(b"hello world");
    assert_eq!(store.stat(&small).await.unwrap(), None);
    assert_eq!(
        store
            .put(&small, Some(11), stream(vec![b"hello ", b"world"]))
            .await
            .unwrap(),
        11
    );
    assert_eq!(store.stat(&small).await.unwrap(), Some(11));
    assert_eq!(read_all(&*store, &small, None).await, b"hello world");
    assert_eq!(read_all(&*store, &small, Some((6, 5))).await, b"world");

    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let big_d = Digest::sha256(&big);
    store.put(&big_d, None, owned(big.clone())).await.unwrap();
    assert_eq!(read_all(&*store, &big_d, None).await, big);
    assert_eq!(
        read_all(&*store, &big_d, Some((1_000_000, 500_000))).await,
        &big[1_000_000..1_500_000]
    );

    // A second put of the same content is a no-op.
    store
        .put(&small, None, stream(vec![b"hello world"]))
        .await
        .unwrap();

    // Digest and length mismatches leave nothing behind.
    let wrong = Digest::sha256(b"other");
    assert!(matches!(
        store.put(&wrong, None, stream(vec![b"content"])).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&wrong).await.unwrap(), None);
    assert!(matches!(
        store
            .put(&Digest::sha256(b"abc"), Some(2), stream(vec![b"abc"]))
            .await,
        Err(Error::SizeMismatch { .. })
    ));
    assert_eq!(store.stat(&Digest::sha256(b"abc")).await.unwrap(), None);
    // A body that fails midway.
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"part")),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]));
    assert!(matches!(
        store.put(&Digest::sha256(b"partial"), None, failing).await,
        Err(Error::Body(_))
    ));
    assert_eq!(store.stat(&Digest::sha256(b"partial")).await.unwrap(), None);

    // sha512.
    let d512 = Digest::compute(Algorithm::Sha512, b"five-twelve");
    store
        .put(&d512, None, stream(vec![b"five-twelve"]))
        .await
        .unwrap();
    assert_eq!(read_all(&*store, &d512, None).await, b"five-twelve");

    // Upload sessions.
    let up = store.upload_create("repo/a").await.unwrap();
    assert_eq!(up.size, 0);
    let info = store.upload_info(&up.id).await.unwrap().unwrap();
    assert_eq!(info.label, "repo/a");
    assert_eq!(
        store
            .upload_append(&up.id, Some(0), Some(3), stream(vec![b"abc"]))
            .await
            .unwrap(),
        3
    );
    assert!(matches!(
        store
            .upload_append(&up.id, Some(1), None, stream(vec![b"zz"]))
            .await,
        Err(Error::RangeMismatch { start: 1, size: 3 })
    ));
    assert_eq!(
        store
            .upload_append(&up.id, None, None, stream(vec![b"def"]))
            .await
            .unwrap(),
        6
    );
    assert!(matches!(
        store.upload_commit(&up.id, &Digest::sha256(b"nope")).await,
        Err(Error::DigestMismatch { .. })
    ));
    // Still there after a failed commit, and commits with the right digest.
    let d = Digest::sha256(b"abcdef");
    assert_eq!(store.upload_commit(&up.id, &d).await.unwrap(), 6);
    assert_eq!(read_all(&*store, &d, None).await, b"abcdef");
    assert!(store.upload_info(&up.id).await.unwrap().is_none());
    assert!(matches!(
        store
            .upload_append(&up.id, None, None, stream(vec![b"x"]))
            .await,
        Err(Error::UploadUnknown)
    ));

    // Cancel, list, unknown ids.
    let a = store.upload_create("x").await.unwrap();
    let b = store.upload_create("y").await.unwrap();
    let ids: Vec<String> = store
        .upload_list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert!(ids.contains(&a.id) && ids.contains(&b.id));
    assert!(store.upload_cancel(&a.id).await.unwrap());
    assert!(!store.upload_cancel(&a.id).await.unwrap());
    assert!(store.upload_info(&a.id).await.unwrap().is_none());
    assert!(store.upload_info("../../etc").await.unwrap().is_none());
    assert!(matches!(
        store.upload_commit("../../../x", &d).await,
        Err(Error::UploadUnknown)
    ));

    // list + delete.
    let listed: Vec<Digest> = list_all(&*store)
        .await
        .into_iter()
        .map(|b| b.digest)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(listed, sorted, "listed in digest order");
    for want in [&small, &big_d, &d512, &d] {
        assert!(listed.contains(want), "{want} listed");
    }
    assert!(store.delete(&small).await.unwrap());
    assert!(!store.delete(&small).await.unwrap());
    assert!(store.read(&small, None).await.unwrap().is_none());

    quarantine_cases(&*store, clock).await;
    staged_cases(&*store).await;
    set_aside_cases(&*store).await;
    paging_inside_a_prefix(&*store).await;
}

/// A blob its producer wrote into a staged file (the store's own, or
/// one of the producer's when the store keeps no local files) is
/// published under its digest; a wrong digest stores nothing; the file
/// is gone either way.
async fn staged_cases(store: &dyn BlobStore) {
    let spare = tempfile::tempdir().unwrap();
    let stage = || match store.stage(Algorithm::Sha256).unwrap() {
        Some(s) => s,
        None => Staged::create(spare.path(), Algorithm::Sha256).unwrap(),
    };
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let d = Digest::sha256(&data);
    let pieces: Vec<Bytes> = data.chunks(100_000).map(Bytes::copy_from_slice).collect();

    let mut wrong = stage();
    wrong.write(&pieces[..3]).unwrap();
    let path = wrong.path().to_owned();
    assert!(matches!(
        store.publish_staged(wrong, &d).await,
        Err(Error::DigestMismatch { .. })
    ));
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(!path.exists(), "a refused staged file is removed");

    let mut staged = stage();
    for p in pieces.chunks(7) {
        staged.write(p).unwrap();
    }
    // Readable while written (the mirror's clients read it so).
    assert_eq!(std::fs::read(staged.path()).unwrap(), data);
    let path = staged.path().to_owned();
    assert_eq!(store.publish_staged(staged, &d).await.unwrap(), 3_000_000);
    assert!(!path.exists(), "the staged file was moved or removed");
    assert_eq!(read_all(store, &d, None).await, data);

    // The same digest again keeps the stored copy.
    let mut again = stage();
    again.write(&pieces).unwrap();
    assert_eq!(store.publish_staged(again, &d).await.unwrap(), 3_000_000);
    assert_eq!(read_all(store, &d, None).await, data);
    assert!(store.delete(&d).await.unwrap());
}

/// A damaged blob set aside reads as absent, leaves the listing, and a
/// fresh copy can be published under its digest.
async fn set_aside_cases(store: &dyn BlobStore) {
    let d = Digest::sha256(b"set aside");
    assert_eq!(
        store.set_aside(&d).await.unwrap(),
        None,
        "nothing to set aside"
    );
    store
        .put(&d, None, stream(vec![b"set aside"]))
        .await
        .unwrap();
    let aside = store.set_aside(&d).await.unwrap();
    assert!(aside.is_some_and(|a| a.contains("corrupt")));
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert!(!list_all(store).await.iter().any(|b| b.digest == d));
    store
        .put(&d, None, stream(vec![b"set aside"]))
        .await
        .unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(9));
    assert!(store.delete(&d).await.unwrap());
}

/// Every stored blob, listed one small page at a time.
async fn list_all(store: &dyn BlobStore) -> Vec<berth_store::StoredBlob> {
    list_paged(store, 2).await
}

/// Every stored blob, listed `limit` at a time.
async fn list_paged(store: &dyn BlobStore, limit: usize) -> Vec<berth_store::StoredBlob> {
    let mut all: Vec<berth_store::StoredBlob> = Vec::new();
    loop {
        let page = store
            .list(all.last().map(|b| &b.digest), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit);
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// A page that ends on a digest whose third hex digit is a letter
/// (`sha256:3fd2...`) continues with the rest of its two-digit prefix
/// (`sha256:3fe0...`): garbage collection lists every stored blob this way
/// and must see them all.
async fn paging_inside_a_prefix(store: &dyn BlobStore) {
    // Two contents whose digests share their first two hex digits, the
    // smaller with a letter third.
    let mut seen: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| {
            let body = format!("prefix-{i}").into_bytes();
            let d = Digest::sha256(&body);
            let key = d.hex()[..2].to_owned();
            match seen.get(&key) {
                Some(other) => {
                    let o = Digest::sha256(other);
                    let (lo, hi) = if o.as_str() < d.as_str() {
                        (other.clone(), body)
                    } else {
                        (body, other.clone())
                    };
                    let third = Digest::sha256(&lo).hex().as_bytes()[2];
                    third.is_ascii_alphabetic().then_some((lo, hi))
                }
                None => {
                    seen.insert(key, body);
                    None
                }
            }
        })
        .unwrap();
    let (da, db) = (Digest::sha256(&a), Digest::sha256(&b));
    for (d, body) in [(&da, &a), (&db, &b)] {
        store.put(d, None, owned(body.clone())).await.unwrap();
    }
    let listed: Vec<Digest> = list_paged(store, 1)
        .await
        .into_iter()
        .map(|b| b.digest)
        .collect();
    assert!(listed.contains(&da), "{da} listed");
    assert!(listed.contains(&db), "{db} listed after {da}");
    for d in [&da, &db] {
        store.delete(d).await.unwrap();
    }
}

/// The two-step deletion garbage collection uses, and the re-publication
/// that races with it.
async fn quarantine_cases(store: &dyn BlobStore, clock: Duration) {
    let modified = |d: Digest| async move {
        list_all(store)
            .await
            .into_iter()
            .find(|b| b.digest == d)
            .map(|b| b.modified)
    };
    // Re-publishing an existing digest refreshes its modification time.
    let q = Digest::sha256(b"quarantined");
    store
        .put(&q, None, stream(vec![b"quarantined"]))
        .await
        .unwrap();
    let first = modified(q.clone()).await.unwrap();
    tokio::time::sleep(clock).await;
    store
        .put(&q, None, stream(vec![b"quarantined"]))
        .await
        .unwrap();
    let second = modified(q.clone()).await.unwrap();
    assert!(second > first, "re-publication refreshes mtime");

    // Quarantine hides the blob; release(false) puts it back.
    let held = store.quarantine(&q).await.unwrap().unwrap();
    assert_eq!(held.size, 11);
    assert_eq!(held.modified, second);
    assert_eq!(store.stat(&q).await.unwrap(), None);
    assert!(list_all(store).await.iter().all(|b| b.digest != q));
    store.release(&q, false).await.unwrap();
    assert_eq!(read_all(store, &q, None).await, b"quarantined");

    // A publication during quarantine makes a fresh copy, which survives
    // both verdicts.
    for delete in [true, false] {
        store.quarantine(&q).await.unwrap().unwrap();
        store
            .put(&q, None, stream(vec![b"quarantined"]))
            .await
            .unwrap();
        store.release(&q, delete).await.unwrap();
        assert_eq!(read_all(store, &q, None).await, b"quarantined");
    }

    // release(true) deletes for good; quarantining nothing is None.
    store.quarantine(&q).await.unwrap().unwrap();
    store.release(&q, true).await.unwrap();
    assert_eq!(store.stat(&q).await.unwrap(), None);
    assert!(store.quarantine(&q).await.unwrap().is_none());
    store.release(&q, true).await.unwrap();
}

#[tokio::test]
async fn filesystem_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    run_suite(
        Arc::new(FsStore::open(dir.path()).unwrap()),
        Duration::from_millis(20),
    )
    .await;
}

#[tokio::test]
async fn filesystem_store_with_sessions_in_memory_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    run_suite(
        Arc::new(
            FsStore::open(dir.path())
                .unwrap()
                .fresh_sessions_in_memory(),
        ),
        Duration::from_millis(20),
    )
    .await;
}

#[tokio::test]
async fn a_session_in_memory_reaches_the_disk_with_its_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let s = FsStore::open(dir.path())
        .unwrap()
        .fresh_sessions_in_memory();
    let entries = || std::fs::read_dir(&uploads).unwrap().count();
    // A POST + whole-body PUT: nothing written, nothing left.
    let a = s.upload_create("repo/a").await.unwrap();
    assert_eq!(entries(), 0, "an empty session is not on disk");
    let info = s.upload_info(&a.id).await.unwrap().unwrap();
    assert_eq!((info.label.as_str(), info.size), ("repo/a", 0));
    assert_eq!(
        s.upload_list().await.unwrap().len(),
        1,
        "listed for the purge"
    );
    assert!(s.upload_cancel(&a.id).await.unwrap());
    assert!(s.upload_info(&a.id).await.unwrap().is_none());
    assert!(!s.upload_cancel(&a.id).await.unwrap());
    // A chunked upload: on disk from its first byte, where a new process
    // finds it.
    let b = s.upload_create("repo/b").await.unwrap();
    s.upload_append(&b.id, Some(0), None, stream(vec![b"first "]))
        .await
        .unwrap();
    assert_eq!(entries(), 1);
    let ids: Vec<String> = s
        .upload_list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, vec![b.id.clone()], "listed once");
    let s = FsStore::open(dir.path())
        .unwrap()
        .fresh_sessions_in_memory();
    assert_eq!(s.upload_info(&b.id).await.unwrap().unwrap().size, 6);
    // An empty session a restart forgot is unknown (its client starts again).
    let c = s.upload_create("repo/c").await.unwrap();
    let s = FsStore::open(dir.path())
        .unwrap()
        .fresh_sessions_in_memory();
    assert!(s.upload_info(&c.id).await.unwrap().is_none());
    // A zero-byte blob committed straight from memory.
    let e = s.upload_create("repo/e").await.unwrap();
    let empty = Digest::sha256(b"");
    assert_eq!(s.upload_commit(&e.id, &empty).await.unwrap(), 0);
    assert_eq!(read_all(&s, &empty, None).await, b"");
    assert_eq!(entries(), 1, "only b's session is on disk");
}

/// Sets the modification time of the file at `path`.
fn touch_at(path: &std::path::Path, when: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

#[tokio::test]
async fn a_shared_directory_keeps_the_young_files_of_tmp_for_the_other_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    let s = FsStore::open(dir.path()).unwrap();
    let old = tmp.join("old");
    let young = tmp.join("young");
    std::fs::write(&old, b"left by a replica that died").unwrap();
    std::fs::write(&young, b"another replica's push in flight").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    touch_at(&old, long_ago);
    drop(s);
    // A replica starting on the shared directory.
    let s = FsStore::open_with(dir.path(), true).unwrap();
    assert!(!old.exists(), "an hour untouched: a leftover");
    assert!(young.exists(), "in flight elsewhere: kept");
    // The collector's sweep removes what stayed untouched for its age.
    assert_eq!(
        s.sweep_orphaned_uploads(Duration::from_secs(60))
            .await
            .unwrap(),
        0
    );
    touch_at(&young, long_ago);
    assert_eq!(
        s.sweep_orphaned_uploads(Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    assert!(!young.exists());
    // A single node clears tmp/ at start, whatever the age.
    std::fs::write(&young, b"a crash's leftover").unwrap();
    let _ = FsStore::open(dir.path()).unwrap();
    assert!(!young.exists());
}

#[tokio::test]
async fn filesystem_upload_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = FsStore::open(dir.path()).unwrap();
        let up = s.upload_create("r").await.unwrap();
        s.upload_append(&up.id, None, None, stream(vec![b"first "]))
            .await
            .unwrap();
        up.id
    };
    // A new store instance has lost the in-memory hash state.
    let s = FsStore::open(dir.path()).unwrap();
    assert_eq!(s.upload_info(&id).await.unwrap().unwrap().size, 6);
    s.upload_append(&id, Some(6), None, stream(vec![b"second"]))
        .await
        .unwrap();
    let d = Digest::sha256(b"first second");
    assert_eq!(s.upload_commit(&id, &d).await.unwrap(), 12);
    assert_eq!(read_all(&s, &d, None).await, b"first second");
    // Leftovers of interrupted single-request uploads are removed on open.
    std::fs::write(dir.path().join("tmp").join("leftover"), b"junk").unwrap();
    let _ = FsStore::open(dir.path()).unwrap();
    assert!(!dir.path().join("tmp").join("leftover").exists());
}

#[tokio::test]
async fn filesystem_quarantine_is_undone_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = Digest::sha256(b"kept");
    {
        let s = FsStore::open(dir.path()).unwrap();
        s.put(&d, None, stream(vec![b"kept"])).await.unwrap();
        s.quarantine(&d).await.unwrap().unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), None);
        // The process dies before release.
    }
    let s = FsStore::open(dir.path()).unwrap();
    assert_eq!(read_all(&s, &d, None).await, b"kept");
    assert!(std::fs::read_dir(dir.path().join("gc"))
        .unwrap()
        .next()
        .is_none());
}

/// The filesystem store stages in its own `tmp/` and publishes the very
/// file written, by rename: no second copy.
#[cfg(unix)]
#[tokio::test]
async fn filesystem_publishes_a_staged_file_by_rename() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let mut staged = store.stage(Algorithm::Sha256).unwrap().expect("stages");
    assert!(staged.path().starts_with(dir.path().join("tmp")));
    staged
        .write(&[Bytes::from_static(b"staged "), Bytes::from_static(b"bytes")])
        .unwrap();
    let inode = std::fs::metadata(staged.path()).unwrap().ino();
    let d = Digest::sha256(b"staged bytes");
    assert_eq!(store.publish_staged(staged, &d).await.unwrap(), 12);
    let published = std::fs::metadata(store.blob_path(&d)).unwrap();
    assert_eq!(published.ino(), inode, "published by rename");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    // A file staged elsewhere (not the store's) is copied in through `put`.
    let other = tempfile::tempdir().unwrap();
    let mut outside = Staged::create(other.path(), Algorithm::Sha256).unwrap();
    outside
        .write(&[Bytes::from_static(b"from outside")])
        .unwrap();
    let d = Digest::sha256(b"from outside");
    assert_eq!(store.publish_staged(outside, &d).await.unwrap(), 12);
    assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), b"from outside");
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}
