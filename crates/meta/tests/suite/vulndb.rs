//! The vulnerability database, on both engines: incremental import
//! batches, lookups by package, status per ecosystem.

use std::collections::BTreeSet;

use berth_meta::audit::{action, Actor, AuditFilter};
use berth_meta::vulndb::{ImportBatch, ImportCounts, NewAdvisory, NewAffected};
use berth_meta::Meta;

fn advisory(id: &str, modified: &str, name: &str, withdrawn: bool) -> NewAdvisory {
    NewAdvisory {
        id: id.into(),
        modified: modified.into(),
        modified_at: if modified.ends_with('2') {
            2_000
        } else {
            1_000
        },
        published_at: Some(500),
        withdrawn_at: withdrawn.then_some(1_500),
        record: format!("{{\"id\":\"{id}\",\"m\":\"{modified}\"}}"),
        aliases: vec![format!("CVE-{id}"), format!("CVE-{id}")],
        affected: vec![NewAffected {
            ecosystem: "Debian:12".into(),
            family: "Debian".into(),
            name: name.into(),
            detail: format!("{{\"v\":\"{modified}\"}}"),
        }],
    }
}

fn batch(import: &str, at: i64, advisories: Vec<NewAdvisory>) -> ImportBatch {
    ImportBatch {
        import_id: import.into(),
        source: format!("{import}.zip"),
        actor: Actor {
            name: "admin".into(),
            ip: None,
            at,
        },
        advisories,
        families: BTreeSet::from(["Debian".to_owned(), "PyPI".to_owned()]),
        invalid: 1,
    }
}

pub async fn run(meta: &Meta) {
    // 250 records: more than one multi-row statement.
    let first: Vec<NewAdvisory> = (0..250)
        .map(|i| {
            advisory(
                &format!("DSA-{i}"),
                "2024-01-01T00:00:01",
                &format!("pkg{}", i % 7),
                false,
            )
        })
        .collect();
    let counts = meta
        .import_advisories(batch("imp1", 10_000, first.clone()))
        .await
        .unwrap();
    assert_eq!(
        counts,
        ImportCounts {
            new: 250,
            changed: 0,
            unchanged: 0,
            withdrawn: 0,
            invalid: 1
        }
    );
    let found = meta
        .advisories_affecting(&[
            ("Debian".into(), "pkg3".into()),
            ("Debian".into(), "none".into()),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 250 / 7 + 1, "every record filed under pkg3");
    assert!(found.iter().all(|f| f.ecosystem == "Debian:12"));

    // Again, with one record changed, one withdrawn and one new: the rest
    // are skipped.
    let mut second = first.clone();
    second[0] = advisory("DSA-0", "2024-01-01T00:00:02", "moved", false);
    second[1] = advisory("DSA-1", "2024-01-01T00:00:02", "pkg1", true);
    second.push(advisory("DSA-new", "2024-01-01T00:00:01", "pkg3", false));
    let counts = meta
        .import_advisories(batch("imp2", 20_000, second))
        .await
        .unwrap();
    assert_eq!(
        counts,
        ImportCounts {
            new: 1,
            changed: 2,
            unchanged: 248,
            withdrawn: 1,
            invalid: 1
        }
    );
    // A second batch of the same import adds to its counts.
    let counts = meta
        .import_advisories(batch(
            "imp2",
            21_000,
            vec![advisory("DSA-x", "2024-01-01T00:00:01", "x", false)],
        ))
        .await
        .unwrap();
    assert_eq!(counts.new, 1);
    let moved = meta
        .advisories_affecting(&[("Debian".into(), "moved".into())])
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].detail, "{\"v\":\"2024-01-01T00:00:02\"}",
        "the old affected rows are gone"
    );
    assert!(
        meta.advisories_affecting(&[("Debian".into(), "pkg1".into())])
            .await
            .unwrap()
            .iter()
            .all(|f| f.advisory_id != "DSA-1"),
        "withdrawn records are not found"
    );

    let status = meta.vulndb_status().await.unwrap();
    let debian = status.iter().find(|s| s.ecosystem == "Debian").unwrap();
    assert_eq!(debian.records, 251, "252 stored, one withdrawn");
    assert_eq!(debian.newest_modified_at, Some(2_000));
    assert_eq!(debian.last_import_at, Some(21_000));
    assert_eq!(debian.last_import_source.as_deref(), Some("imp2.zip"));
    let pypi = status.iter().find(|s| s.ecosystem == "PyPI").unwrap();
    assert_eq!((pypi.records, pypi.last_import_at), (0, Some(21_000)));

    let imports = meta.vulndb_imports(10).await.unwrap();
    assert_eq!(
        imports.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["imp2", "imp1"]
    );
    assert_eq!(
        (
            imports[0].counts.new,
            imports[0].counts.changed,
            imports[0].counts.unchanged,
            imports[0].counts.invalid
        ),
        (2, 2, 248, 2)
    );
    assert_eq!(
        (imports[0].started_at, imports[0].updated_at),
        (20_000, 21_000)
    );
    assert_eq!(meta.vulndb_changed_at().await.unwrap(), Some(21_000));

    let events = meta
        .audit_events(&AuditFilter {
            action: Some(action::VULNDB_IMPORT.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "one audit event per import, not per batch");

    // Paging through every stored record (withdrawn ones too), by id, each
    // with its affected entries.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = meta.advisories_page(&after, 100).await.unwrap();
        assert!(page.len() <= 100);
        for (id, record, details) in &page {
            assert!(record.contains(id.as_str()), "{record}");
            assert_eq!(details.len(), 1, "{id}: {details:?}");
        }
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        seen.extend(page.into_iter().map(|p| p.0));
    }
    assert_eq!(seen.len(), 252, "every record, the withdrawn one included");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "by id, each once");
}
