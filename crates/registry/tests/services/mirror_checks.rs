//! When the mirror last checked a cached tag upstream
//! (`mirror_tag_checks`): the cache limit's pass forgets the records of
//! tags that are gone, whether the cache is limited or not.

use berth_oci::Reference;
use berth_registry::{Caller, Settings};

use super::gc::push_image;
use super::{n, registry, t};

#[tokio::test]
async fn the_eviction_pass_forgets_the_checks_of_tags_that_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Settings::default()).await;
    push_image(&reg, "hub/library/app", "v1", "a").await;
    push_image(&reg, "hub/library/app", "v2", "b").await;
    push_image(&reg, "hub/library/db", "v1", "c").await;
    let now = berth_meta::now_ms();
    let checks = [
        ("hub/library/app", "v1"),
        ("hub/library/app", "v2"),
        ("hub/library/db", "v1"),
        ("hub/library/app", "never-cached"),
    ];
    for (r, tag) in checks {
        reg.record_mirror_tag_check(&n(r), &t(tag), now)
            .await
            .unwrap();
    }
    let checked = |r: &'static str, tag: &'static str| {
        let reg = &reg;
        async move { reg.mirror_tag_checked(&n(r), &t(tag)).await.unwrap() }
    };
    // No cache limit is set: the pass evicts nothing, but forgets.
    let run = reg.evict_mirror_cache(now).await.unwrap();
    assert_eq!(run.manifests(), 0);
    assert_eq!(run.tag_checks_forgotten, 1);
    assert_eq!(checked("hub/library/app", "never-cached").await, None);
    assert_eq!(checked("hub/library/app", "v1").await, Some(now));

    // A tag deleted, and the only image of a repository.
    let admin = Caller::system("admin");
    reg.delete_manifest(&n("hub/library/app"), &Reference::Tag(t("v2")), &admin)
        .await
        .unwrap();
    reg.delete_manifest(&n("hub/library/db"), &Reference::Tag(t("v1")), &admin)
        .await
        .unwrap();
    let run = reg.evict_mirror_cache(now).await.unwrap();
    assert_eq!(run.tag_checks_forgotten, 2);
    assert_eq!(checked("hub/library/app", "v2").await, None);
    assert_eq!(checked("hub/library/db", "v1").await, None);
    assert_eq!(checked("hub/library/app", "v1").await, Some(now));
    // Nothing more to forget.
    assert_eq!(
        reg.evict_mirror_cache(now)
            .await
            .unwrap()
            .tag_checks_forgotten,
        0
    );
}
