//! What a delivery's body looks like, in the webhook's format.
//!
//! - [`Format::CloudEvents`]: one CloudEvents 1.0 event in structured JSON
//!   mode (`application/cloudevents+json`); `type` is `io.berth.` and the
//!   event kind, `data` the event's fields.
//! - [`Format::Distribution`]: the reference registry's notification
//!   envelope (`application/vnd.docker.distribution.events.v1+json`,
//!   `{"events": [...]}` with `action` `push`, `pull` or `delete`), for
//!   tools written against it. It has no words for tag moves, quotas or
//!   job runs: such webhooks subscribe only to what it can say
//!   ([`Format::supports`]).

use berth_meta::events::{EventKind, OutboxEvent};
use berth_oci::time::Timestamp;
use serde_json::{json, Map, Value};

/// A webhook's payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CloudEvents 1.0, structured JSON.
    CloudEvents,
    /// The reference registry's notification envelope.
    Distribution,
}

impl Format {
    /// Its name in the API (`cloudevents`, `distribution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CloudEvents => "cloudevents",
            Format::Distribution => "distribution",
        }
    }

    /// The format named `s`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "cloudevents" => Some(Format::CloudEvents),
            "distribution" => Some(Format::Distribution),
            _ => None,
        }
    }

    /// The body's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::CloudEvents => "application/cloudevents+json; charset=utf-8",
            Format::Distribution => "application/vnd.docker.distribution.events.v1+json",
        }
    }

    /// Whether the format can express events of `kind`.
    pub fn supports(self, kind: EventKind) -> bool {
        match self {
            Format::CloudEvents => true,
            Format::Distribution => matches!(
                kind,
                EventKind::ManifestPushed
                    | EventKind::TagDeleted
                    | EventKind::ManifestDeleted
                    | EventKind::Pulled
                    | EventKind::Ping
            ),
        }
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let s = Timestamp(ms.div_euclid(1000)).to_string();
    format!("{}.{:03}Z", s.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Where events come from: the registry's external URL, or `urn:berth`.
fn source(base: Option<&str>) -> String {
    base.map_or_else(
        || "urn:berth".to_owned(),
        |b| b.trim_end_matches('/').to_owned(),
    )
}

/// The body of `event` in `format`. `base` is the registry's external URL,
/// when configured (CloudEvents `source`, the envelope's target URLs).
pub fn render(format: Format, event: &OutboxEvent, base: Option<&str>) -> Vec<u8> {
    let value = match format {
        Format::CloudEvents => cloud_event(event, base),
        Format::Distribution => envelope(event, base),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn cloud_event(e: &OutboxEvent, base: Option<&str>) -> Value {
    let mut data = Map::new();
    for (k, v) in [
        ("namespace", &e.namespace),
        ("repository", &e.repository),
        ("digest", &e.digest),
        ("tag", &e.tag),
    ] {
        if let Some(v) = v {
            data.insert(k.into(), json!(v));
        }
    }
    data.insert(
        "actor".into(),
        json!({ "name": e.actor, "addr": e.client_ip }),
    );
    if let Value::Object(extra) = &e.data {
        for (k, v) in extra {
            data.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let subject = match (&e.repository, &e.tag, &e.digest) {
        (Some(r), Some(t), _) => Some(format!("{r}:{t}")),
        (Some(r), None, Some(d)) => Some(format!("{r}@{d}")),
        (Some(r), None, None) => Some(r.clone()),
        (None, ..) => e.namespace.clone(),
    };
    let mut ce = json!({
        "specversion": "1.0",
        "id": e.uid,
        "source": source(base),
        "type": format!("io.berth.{}", e.kind.as_str()),
        "time": rfc3339(e.at),
        "datacontenttype": "application/json",
        "data": data,
    });
    if let Some(s) = subject {
        ce["subject"] = json!(s);
    }
    ce
}

fn envelope(e: &OutboxEvent, base: Option<&str>) -> Value {
    let repo = e.repository.clone().unwrap_or_default();
    let host = base
        .and_then(|b| {
            b.split_once("://")
                .map(|(_, h)| h.trim_end_matches('/').to_owned())
        })
        .unwrap_or_default();
    let url = |reference: &str| {
        base.map(|b| {
            format!(
                "{}/v2/{repo}/manifests/{reference}",
                b.trim_end_matches('/')
            )
        })
    };
    let one = |i: usize, action: &str, method: &str, target: Value| {
        json!({
            "id": if i == 0 { e.uid.clone() } else { format!("{}-{i}", e.uid) },
            "timestamp": rfc3339(e.at),
            "action": action,
            "target": target,
            "request": {
                "id": e.uid,
                "addr": e.client_ip.clone().unwrap_or_default(),
                "host": host,
                "method": method,
                "useragent": "",
            },
            "actor": { "name": e.actor },
            "source": { "addr": host, "instanceID": "" },
        })
    };
    let digest = e.digest.clone().unwrap_or_default();
    let mut events = Vec::new();
    match e.kind {
        EventKind::ManifestPushed => {
            let tags: Vec<String> = e.data["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let target = |tag: Option<&str>| {
                let mut t = json!({
                    "mediaType": e.data["media_type"],
                    "size": e.data["size"],
                    "length": e.data["size"],
                    "digest": digest,
                    "repository": repo,
                    "url": url(&digest),
                });
                if let Some(tag) = tag {
                    t["tag"] = json!(tag);
                }
                t
            };
            if tags.is_empty() {
                events.push(one(0, "push", "PUT", target(None)));
            }
            for (i, tag) in tags.iter().enumerate() {
                events.push(one(i, "push", "PUT", target(Some(tag))));
            }
        }
        EventKind::TagDeleted => events.push(one(
            0,
            "delete",
            "DELETE",
            json!({ "repository": repo, "tag": e.tag, "digest": digest }),
        )),
        EventKind::ManifestDeleted => events.push(one(
            0,
            "delete",
            "DELETE",
            json!({ "repository": repo, "digest": digest, "url": url(&digest) }),
        )),
        EventKind::Pulled => {
            let mut i = 0;
            for m in e.data["manifests"].as_array().into_iter().flatten() {
                let d = m["digest"].as_str().unwrap_or_default();
                events.push(one(
                    i,
                    "pull",
                    "GET",
                    json!({ "repository": repo, "digest": d, "url": url(d), "pulls": m["pulls"] }),
                ));
                i += 1;
            }
            for t in e.data["tags"].as_array().into_iter().flatten() {
                events.push(one(
                    i,
                    "pull",
                    "GET",
                    json!({ "repository": repo, "tag": t["tag"], "pulls": t["pulls"] }),
                ));
                i += 1;
            }
        }
        // A ping, or what the envelope cannot say: an empty envelope.
        _ => {}
    }
    json!({ "events": events })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed() -> OutboxEvent {
        OutboxEvent {
            id: 7,
            uid: "0b6c6a4e-1d1e-4a57-9d57-6f0f5d0b8b00".into(),
            kind: EventKind::ManifestPushed,
            at: 1_714_566_600_123,
            actor: "ci".into(),
            client_ip: Some("10.0.0.5".into()),
            namespace: Some("acme".into()),
            repository: Some("acme/web".into()),
            digest: Some("sha256:abc".into()),
            tag: None,
            data: json!({
                "tags": ["v1", "latest"],
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size": 512,
            }),
        }
    }

    #[test]
    fn cloud_events_are_structured_json() {
        let body = render(
            Format::CloudEvents,
            &pushed(),
            Some("https://r.example.com/"),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.berth.manifest.pushed");
        assert_eq!(v["source"], "https://r.example.com");
        assert_eq!(v["subject"], "acme/web@sha256:abc");
        assert_eq!(v["time"], "2024-05-01T12:30:00.123Z");
        assert_eq!(v["id"], "0b6c6a4e-1d1e-4a57-9d57-6f0f5d0b8b00");
        assert_eq!(v["data"]["tags"], json!(["v1", "latest"]));
        assert_eq!(v["data"]["actor"]["name"], "ci");
        assert_eq!(v["data"]["size"], 512);
    }

    #[test]
    fn the_envelope_has_one_push_per_tag() {
        let body = render(
            Format::Distribution,
            &pushed(),
            Some("https://r.example.com"),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["action"], "push");
        assert_eq!(events[0]["target"]["tag"], "v1");
        assert_eq!(events[1]["target"]["tag"], "latest");
        assert_eq!(events[0]["target"]["length"], 512);
        assert_eq!(
            events[0]["target"]["url"],
            "https://r.example.com/v2/acme/web/manifests/sha256:abc"
        );
        assert_eq!(events[0]["request"]["addr"], "10.0.0.5");
        assert_eq!(events[0]["actor"]["name"], "ci");
        assert_ne!(events[0]["id"], events[1]["id"]);
        assert!(!Format::Distribution.supports(EventKind::TagMoved));
        assert!(!Format::Distribution.supports(EventKind::GcFinished));
    }
}
