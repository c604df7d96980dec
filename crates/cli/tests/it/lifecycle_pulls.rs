//! Pull statistics against a real `berth serve`: GETs count, HEADs do not,
//! the management API shows the counts at once, and a SIGTERM flushes them
//! so a restarted server still has them (no sleeping: the API merges
//! unflushed counts, shutdown flushes).

use serde_json::Value;

use crate::common::Berth;
use crate::oci::*;

async fn get_json(c: &reqwest::Client, url: String) -> Value {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn pulls_are_counted_shown_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut b = Berth::start_in(&data, &[], None, tmp.path());
    let (c, u) = (client(), b.url());
    let (d, m) = push_image(&c, &u, "acme/app", "v1", "p").await;
    push_image(&c, &u, "acme/app", "idle", "q").await;
    for _ in 0..7 {
        let r = c
            .get(format!("{u}/v2/acme/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = c
            .get(format!("{u}/v2/acme/app/manifests/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..4 {
        let r = c
            .head(format!("{u}/v2/acme/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // A conditional GET is a pull too (the client asked for the tag).
    let r = c
        .get(format!("{u}/v2/acme/app/manifests/v1"))
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let check = |tags: &Value, manifests: &Value| {
        let tag = tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "v1")
            .unwrap()
            .clone();
        assert_eq!(tag["pull_count"], 8, "{tag}");
        assert_eq!(tag["digest"], d.as_str());
        assert!(tag["last_pulled_at"].as_i64().unwrap() >= tag["pushed_at"].as_i64().unwrap());
        let config_and_layer =
            "{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":\"p\"}".len() + "layer-p".len();
        assert_eq!(tag["size"], (m.len() + config_and_layer) as u64);
        let idle = &tags["tags"][0];
        assert_eq!(
            (idle["name"].as_str(), idle["pull_count"].as_i64()),
            (Some("idle"), Some(0))
        );
        assert!(idle["last_pulled_at"].is_null());
        let man = manifests["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["digest"] == d.as_str())
            .unwrap()
            .clone();
        assert_eq!(man["pull_count"], 11, "{man}");
        assert_eq!(man["size"], m.len());
        assert_eq!(man["tags"], serde_json::json!(["v1"]));
    };
    let tags = get_json(&c, format!("{u}/api/v1/repositories/acme/app/tags")).await;
    let manifests = get_json(&c, format!("{u}/api/v1/repositories/acme/app/manifests")).await;
    check(&tags, &manifests);

    // SIGTERM flushes; the restarted server reads the counts back.
    assert!(b.terminate().success());
    let b = Berth::start_in(&data, &[], None, tmp.path());
    let u = b.url();
    let tags2 = get_json(&c, format!("{u}/api/v1/repositories/acme/app/tags")).await;
    let manifests2 = get_json(&c, format!("{u}/api/v1/repositories/acme/app/manifests")).await;
    check(&tags2, &manifests2);
    assert_eq!(
        tags2, tags,
        "nothing lost or counted twice across the restart"
    );

    // Unknown repositories and views.
    let r = c
        .get(format!("{u}/api/v1/repositories/acme/none/tags"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "NOT_FOUND").await;
    let r = c
        .get(format!("{u}/api/v1/repositories/acme/app/nope"))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "NOT_FOUND").await;
}
