//! What `/metrics` and `/readyz` ask the metadata layer: the probe and the
//! storage figures of every namespace in one pass.

use berth_meta::Meta;

use berth_testkit::digests::digest;

use super::n;

pub async fn run(meta: &Meta) {
    meta.probe().await.unwrap();

    // A layer shared by two repositories of one namespace counts once; a
    // repository named like the namespace belongs to it; a namespace whose
    // name starts with another's is its own.
    meta.link_blob(&n("obs/x"), &digest("obs-shared"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("obs/y"), &digest("obs-shared"), 10, 1)
        .await
        .unwrap();
    meta.link_blob(&n("obs/y/deep"), &digest("obs-own"), 5, 1)
        .await
        .unwrap();
    meta.link_blob(&n("obs"), &digest("obs-top"), 1, 1)
        .await
        .unwrap();
    meta.link_blob(&n("obsother"), &digest("obs-shared"), 10, 1)
        .await
        .unwrap();
    let usage = meta.usage_by_namespace().await.unwrap();
    let of = |ns: &str| {
        usage
            .iter()
            .find(|(n, _, _)| n == ns)
            .map(|(_, b, s)| (*b, *s))
    };
    assert_eq!(of("obs"), Some((3, 16)), "{usage:?}");
    assert_eq!(of("obsother"), Some((1, 10)), "{usage:?}");
    // The bytes figure is the quota's.
    assert_eq!(meta.namespace_usage(&crate::ns("obs")).await.unwrap(), 16);
    let (in_use, idle, max) = meta.pool_use();
    assert!(max >= 1 && in_use + idle <= max, "{in_use} {idle} {max}");
}
