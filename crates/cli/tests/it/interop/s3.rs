//! skopeo against `berth serve --storage s3://...` (SeaweedFS, SigV4
//! checked): a multi-arch image and an image whose layer spans several
//! multipart parts, pushed and pulled back with identical digests.

use super::*;
use crate::s3::{weed, OnS3};

#[test]
fn skopeo_round_trip_on_object_storage() {
    if !require("skopeo", "interop::s3::skopeo_round_trip_on_object_storage") {
        return;
    }
    let s = OnS3::start(weed(), "skopeo", &[], None);
    let addr = s.berth().addr.clone();
    let c = Clients::new();
    let src = c.dir("src");
    let (index, children) = layout::write_multiarch(&src, "multi");
    let big = layout::write_image(&src, "big", "linux/amd64", &[12 << 20, 1000]);
    let multi = format!("docker://{addr}/interop/s3:multi");
    c.push_layout(&src, "multi", &multi, true);
    let single = format!("docker://{addr}/interop/s3:big");
    c.push_layout(&src, "big", &single, false);

    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &multi]);
    assert_eq!(sha256(&raw), index, "index digest changed in transit");

    let back = c.dir("back");
    for (reference, tag, all) in [(&multi, "multi", true), (&single, "big", false)] {
        let dest = format!("oci:{}:{tag}", back.display());
        let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        args.push(reference);
        args.push(&dest);
        c.skopeo(&args);
    }
    assert_eq!(
        layout::resolve(&back, "multi").expect("pulled").digest,
        index
    );
    assert_eq!(layout::resolve(&back, "big").expect("pulled").digest, big);
    for manifest in children.iter().chain([&big]) {
        let m = parse(&layout::read_blob(&back, manifest));
        assert_eq!(
            layout::read_blob(&back, manifest),
            layout::read_blob(&src, manifest)
        );
        for d in blobs_of(&m) {
            let pulled = layout::read_blob(&back, &d);
            assert_eq!(sha256(&pulled), d, "blob {d} verifies");
            assert_eq!(pulled, layout::read_blob(&src, &d), "blob {d}");
        }
        assert_blobs_present(&s.url(), "interop/s3", &m);
    }
}
