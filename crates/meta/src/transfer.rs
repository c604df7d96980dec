//! Copying one database into another (`berth migrate`: SQLite into
//! PostgreSQL), generic over the schema.
//!
//! Nothing here names a table: the tables and their columns are read from
//! the source's catalogue (`sqlite_master`, `pragma_table_info`), ordered
//! parents first by their foreign keys, and copied row by row with
//! `INSERT ... ON CONFLICT DO NOTHING`, a page of rows per transaction. So
//! a table added by a later migration is copied without touching this
//! code, and a copy interrupted anywhere is resumed by running it again
//! (rows already there are skipped). Both databases must be at the same
//! schema version (the same berth binary migrated both).
//!
//! Afterwards the target's identity sequences are moved past the copied
//! ids ([`Meta::sync_identities`]), so new rows do not collide.

use sqlx::{AnyConnection, Row};

use crate::db::Dialect;
use crate::{Error, Meta, Result};

/// Rows per page (and per target transaction).
const PAGE: i64 = 500;

/// One column's value, typed by its declared type.
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

/// How a declared column type is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
    Bool,
}

fn kind_of(declared: &str) -> Result<Kind> {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" => Ok(Kind::Int),
        "text" => Ok(Kind::Text),
        "blob" | "bytea" => Ok(Kind::Bytes),
        "boolean" => Ok(Kind::Bool),
        other => Err(Error::Corrupt(format!(
            "a column type berth cannot copy: {other}"
        ))),
    }
}

/// A table of the source: its name and columns.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name.
    pub name: String,
    columns: Vec<(String, Kind)>,
}

impl Meta {
    /// The tables of this (SQLite) database that hold registry data, parents
    /// before the tables whose foreign keys point at them. The migration
    /// bookkeeping (`schema_migrations`) is not one of them.
    pub async fn tables(&self) -> Result<Vec<Table>> {
        if self.dialect() != Dialect::Sqlite {
            return Err(Error::Corrupt(
                "tables are enumerated on the SQLite source only".into(),
            ));
        }
        let mut c = self.read.acquire().await?;
        let names: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name",
        )
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
        let mut tables = Vec::new();
        let mut parents: Vec<(String, Vec<String>)> = Vec::new();
        for name in names {
            let mut columns = Vec::new();
            for r in sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                .bind(&name)
                .fetch_all(&mut *c)
                .await?
            {
                columns.push((r.try_get(0)?, kind_of(&r.try_get::<String, _>(1)?)?));
            }
            let refs: Vec<String> =
                sqlx::query("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                    .bind(&name)
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<_, _>>()?;
            parents.push((name.clone(), refs));
            tables.push(Table { name, columns });
        }
        // Parents first (a stable topological order).
        let mut ordered: Vec<Table> = Vec::with_capacity(tables.len());
        while !tables.is_empty() {
            let ready = tables.iter().position(|t| {
                parents
                    .iter()
                    .find(|(n, _)| *n == t.name)
                    .is_none_or(|(n, refs)| {
                        refs.iter()
                            .all(|p| p == n || ordered.iter().any(|o| &o.name == p))
                    })
            });
            match ready {
                Some(i) => ordered.push(tables.remove(i)),
                None => {
                    return Err(Error::Corrupt(
                        "the tables' foreign keys form a cycle".into(),
                    ))
                }
            }
        }
        Ok(ordered)
    }

    /// Rows in `table`.
    pub async fn count_rows(&self, table: &str) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let row = sqlx::query(&sql).fetch_one(&self.read).await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }

    /// Copies every row of `table` (of this SQLite database) into `to`,
    /// skipping rows `to` has already (by primary key), a page per
    /// transaction; `progress` gets the rows read so far after each page.
    /// Returns the rows read.
    pub async fn copy_table(
        &self,
        table: &Table,
        to: &Meta,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<u64> {
        let names: Vec<String> = table
            .columns
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect();
        // Booleans are read as integers (the Any driver has no SQLite
        // boolean; SQLite stores them as integers anyway).
        let selected: Vec<String> = table
            .columns
            .iter()
            .map(|(n, k)| match k {
                Kind::Bool => format!("CAST(\"{n}\" AS INTEGER)"),
                _ => format!("\"{n}\""),
            })
            .collect();
        let select = format!(
            "SELECT rowid, {} FROM \"{}\" WHERE rowid > $1 ORDER BY rowid LIMIT $2",
            selected.join(", "),
            table.name
        );
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO \"{}\" ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            table.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let mut after = i64::MIN;
        let mut copied = 0u64;
        loop {
            let rows = sqlx::query(&select)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.read)
                .await?;
            let Some(last) = rows.last() else {
                return Ok(copied);
            };
            after = last.try_get(0)?;
            let mut page: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut values = Vec::with_capacity(table.columns.len());
                for (i, (_, kind)) in table.columns.iter().enumerate() {
                    let at = i + 1;
                    values.push(match kind {
                        Kind::Int => Value::Int(r.try_get(at)?),
                        Kind::Text => Value::Text(r.try_get(at)?),
                        Kind::Bytes => Value::Bytes(r.try_get(at)?),
                        Kind::Bool => Value::Bool(r.try_get::<Option<i64>, _>(at)?.map(|v| v != 0)),
                    });
                }
                page.push(values);
            }
            copied += page.len() as u64;
            let sql = insert.clone();
            to.transact(move |c| Box::pin(async move { insert_page(c, &sql, page).await }))
                .await?;
            progress(copied);
        }
    }

    /// Moves every identity sequence of this (PostgreSQL) database past
    /// the largest id its table holds.
    pub async fn sync_identities(&self, tables: &[Table]) -> Result<()> {
        if self.dialect() != Dialect::Postgres {
            return Ok(());
        }
        for t in tables {
            if !t.columns.iter().any(|(n, k)| n == "id" && *k == Kind::Int) {
                continue;
            }
            let row = sqlx::query("SELECT pg_get_serial_sequence($1, 'id')")
                .bind(&t.name)
                .fetch_one(&self.read)
                .await?;
            let Some(seq) = row.try_get::<Option<String>, _>(0)? else {
                continue;
            };
            let sql = format!(
                "SELECT 1 AS moved FROM (SELECT setval($1, GREATEST(
                     (SELECT COALESCE(MAX(id), 0) FROM \"{}\"), 1))) AS s",
                t.name
            );
            sqlx::query(&sql).bind(seq).execute(&self.read).await?;
        }
        Ok(())
    }
}

/// The `server_keys` entry in which `berth migrate` records, on the
/// target, which source it copies and how far it got.
pub const MIGRATION_MARKER: &str = "berth-migrate";

impl Meta {
    /// The migration marker, if this database is (or was) the target of
    /// `berth migrate`.
    pub async fn migration_marker(&self) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM server_keys WHERE name = $1")
            .bind(MIGRATION_MARKER)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Sets the migration marker.
    pub async fn set_migration_marker(&self, value: &str) -> Result<()> {
        let value = value.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO server_keys (name, value, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .bind(MIGRATION_MARKER)
                .bind(&value)
                .bind(crate::now_ms())
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Whether any of `tables` holds a row in this database (the
    /// migration marker aside).
    pub async fn holds_data(&self, tables: &[Table]) -> Result<bool> {
        for t in tables {
            let sql = format!(
                "SELECT COUNT(*) FROM \"{}\"{}",
                t.name,
                if t.name == "server_keys" {
                    " WHERE name <> $1"
                } else {
                    " WHERE $1 IS NOT NULL"
                }
            );
            let row = sqlx::query(&sql)
                .bind(MIGRATION_MARKER)
                .fetch_one(&self.read)
                .await?;
            if row.try_get::<i64, _>(0)? > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

async fn insert_page(c: &mut AnyConnection, sql: &str, page: Vec<Vec<Value>>) -> Result<()> {
    for row in page {
        let mut q = sqlx::query(sql);
        for v in row {
            q = match v {
                Value::Int(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
            };
        }
        q.execute(&mut *c).await?;
    }
    Ok(())
}
