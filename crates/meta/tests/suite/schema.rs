//! The schema on both engines: replicas that start together migrate once,
//! and the SQLite and PostgreSQL schemas describe the same tables, columns
//! and indexes (so the two migration lists cannot drift apart).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_meta::Meta;
use sqlx::{AnyConnection, Connection as _, Row};

use super::Postgres;

/// Connects to `url` once the server accepts connections.
async fn wait_for(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match AnyConnection::connect(url).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to PostgreSQL: {e}"),
        }
    }
}

/// A table's columns (name -> (type, not null)) and its explicit indexes
/// (name -> columns).
type Schema = BTreeMap<String, (BTreeMap<String, (String, bool)>, BTreeMap<String, String>)>;

/// The engine-neutral name of a declared type.
fn neutral(declared: &str) -> String {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => "bigint".into(),
        "text" => "text".into(),
        "blob" | "bytea" => "bytes".into(),
        "boolean" => "boolean".into(),
        other => panic!("a column type with no mapping between the engines: {other}"),
    }
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut c = AnyConnection::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    let mut schema = Schema::new();
    for t in tables {
        let mut columns = BTreeMap::new();
        for r in sqlx::query("SELECT name, type, \"notnull\", pk FROM pragma_table_info($1)")
            .bind(&t)
            .fetch_all(&mut c)
            .await
            .unwrap()
        {
            let not_null = r.get::<i64, _>(2) != 0 || r.get::<i64, _>(3) != 0;
            columns.insert(
                r.get::<String, _>(0),
                (neutral(&r.get::<String, _>(1)), not_null),
            );
        }
        let mut indexes = BTreeMap::new();
        for r in sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1
             AND sql IS NOT NULL",
        )
        .bind(&t)
        .fetch_all(&mut c)
        .await
        .unwrap()
        {
            let name: String = r.get(0);
            let cols: Vec<String> =
                sqlx::query("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&name)
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
            indexes.insert(name, cols.join(", "));
        }
        schema.insert(t, (columns, indexes));
    }
    schema
}

async fn postgres_schema(c: &mut AnyConnection) -> Schema {
    let mut schema = Schema::new();
    for r in sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
    {
        let (t, col, ty, nullable): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        schema
            .entry(t)
            .or_default()
            .0
            .insert(col, (neutral(&ty), nullable == "NO"));
    }
    // Explicit indexes only: those behind a primary key or a UNIQUE
    // constraint are the constraints' (compared through the columns).
    for r in sqlx::query(
        "SELECT i.tablename::text, i.indexname::text, i.indexdef::text FROM pg_indexes i
         WHERE i.schemaname = 'public' AND NOT EXISTS (
             SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname)",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
    {
        let (t, name, def): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let cols = def
            .rsplit_once('(')
            .map(|(_, c)| c.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        schema.entry(t).or_default().1.insert(name, cols);
    }
    schema
}

#[tokio::test]
async fn replicas_starting_together_migrate_once_and_both_engines_agree() {
    let pg = Postgres::start();
    let mut admin = wait_for(&pg.url()).await;
    sqlx::query("CREATE DATABASE replicas")
        .execute(&mut admin)
        .await
        .unwrap();
    let url = pg.url().replace("/postgres?", "/replicas?");
    // Eight replicas start at once on an empty database.
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Meta::connect(&url).await })
        })
        .collect();
    let mut metas = Vec::new();
    for s in starts {
        metas.push(s.await.unwrap().expect("every replica starts"));
    }
    let mut c = AnyConnection::connect(&url).await.unwrap();
    let versions: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = berth_meta::migrations::POSTGRES
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(versions, expected, "each migration applied once");
    for m in &metas {
        m.close().await;
    }

    // The same schema on both engines.
    let postgres = postgres_schema(&mut c).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("berth.db");
    Meta::open_sqlite(&db).await.unwrap().close().await;
    let sqlite = sqlite_schema(&format!("sqlite://{}", db.display())).await;
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "tables"
    );
    for (table, (columns, indexes)) in &sqlite {
        let (pg_columns, pg_indexes) = &postgres[table];
        assert_eq!(columns, pg_columns, "columns of {table} (type, not null)");
        assert_eq!(indexes, pg_indexes, "indexes of {table}");
    }
}

/// Two handles on one SQLite file stand for two processes (a server and a
/// CLI command on its data directory). A write that reads before it writes
/// must not fail with "database is locked" because the other handle
/// committed in between: the writer takes the lock first (`BEGIN
/// IMMEDIATE`) and the other waits for it.
#[tokio::test]
async fn sqlite_writes_from_two_processes_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let a = Meta::open_sqlite(&path).await.unwrap();
    let b = Meta::open_sqlite(&path).await.unwrap();
    let (inside, mut entered) = tokio::sync::mpsc::channel::<()>(1);
    let (done, mut b_done) = tokio::sync::mpsc::channel::<()>(1);
    let first = tokio::spawn(async move {
        a.transact(move |c| {
            Box::pin(async move {
                // Read first: a deferred transaction takes its snapshot here.
                sqlx::query("SELECT COUNT(*) FROM server_keys")
                    .fetch_one(&mut *c)
                    .await?;
                let _ = inside.send(()).await;
                // Give the other process its chance to commit in between.
                let _ = tokio::time::timeout(Duration::from_millis(300), b_done.recv()).await;
                sqlx::query(
                    "INSERT INTO server_keys (name, value, created_at) VALUES ('a', 'x', 0)",
                )
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    });
    entered.recv().await.unwrap();
    let second = b
        .transact(|c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO server_keys (name, value, created_at) VALUES ('b', 'y', 0)",
                )
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await;
    let _ = done.send(()).await;
    second.expect("the second process's write");
    first
        .await
        .unwrap()
        .expect("the first process's read-then-write");
}
