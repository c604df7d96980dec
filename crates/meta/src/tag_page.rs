//! One page of a repository's tags, filtered, sorted and cut in the
//! database, with the sizes of the images on that page only: what the web
//! UI's tag table shows, at the same cost for 10 tags as for 10,000.
//!
//! An image's size is the manifest, everything it references and, for an
//! index, its child manifests and theirs, each counted once (as
//! `berth_registry`'s inventory computes it from the whole repository).
//! It is stored with the manifest (`manifests.total_size`, migration 20):
//! the registry passes an image's from the blob sizes it checked, an
//! index's is computed here in the write's transaction by a recursive
//! query over its references ([`store_total`]). So every order reads one
//! stored number per tag, and the size order walks the index
//! `manifests_total_size` as the push-time order walks `manifests_pushed`.
//! Mirrored (sparse) content whose references are not all here yet has
//! none stored; its size is computed on read by the same recursive query
//! from what is here, for the page's manifests without a stored total (a
//! repository holding such a manifest is sorted by size by computing and
//! sorting every filtered tag's size).

use sqlx::{AnyConnection, Row};

use berth_oci::{Digest, RepositoryName, Tag};

use crate::{digest_at, tag_at, Dialect, Meta, Result};

/// The order of a tag page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagOrder {
    /// By tag name.
    #[default]
    Name,
    /// By the manifest's push time, then when the tag was set.
    Pushed,
    /// By image size.
    Size,
    /// By pulls through the tag (as flushed to the database).
    Pulls,
}

/// Which tags, in which order, how many.
#[derive(Debug, Clone, Default)]
pub struct TagPageQuery {
    /// Only tags whose name contains this (case-sensitive); empty: all.
    pub contains: String,
    /// Sort key; ties are broken by name in the same direction.
    pub order: TagOrder,
    /// Largest (latest, last name) first.
    pub descending: bool,
    /// Tags on the page.
    pub limit: u32,
    /// Tags skipped before it.
    pub offset: u64,
}

/// A tag on a page, with its manifest's media type, push time and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    /// Tag name.
    pub name: Tag,
    /// Manifest it points to.
    pub digest: Digest,
    /// That manifest's media type.
    pub media_type: String,
    /// When that manifest was pushed (Unix ms).
    pub pushed_at: i64,
    /// When the tag was last set (Unix ms).
    pub updated_at: i64,
    /// Bytes of the image (see the module docs).
    pub size: u64,
    /// GETs through this tag (flushed).
    pub pull_count: i64,
    /// Last GET through this tag (flushed, Unix ms).
    pub last_pulled_at: Option<i64>,
}

/// One page of tags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagPage {
    /// Tags matching the filter, on every page.
    pub total: u64,
    /// The page's tags, in order.
    pub tags: Vec<TagRow>,
    /// The tag a pull command is best shown for: `latest` if it exists,
    /// else the most recently pushed (ignoring the filter).
    pub featured: Option<(Tag, Digest)>,
}

/// `CTE sizes(digest, size)`: the total size of each manifest `roots`
/// (a `SELECT digest ...` over `$1`, the repository id) selects. `reach`
/// holds each manifest and blob reachable from a root once (the recursive
/// `UNION` drops repeats: a base layer shared by an index's images counts
/// once), found through the references' primary key from the root on.
fn sizes_cte(roots: &str) -> String {
    format!(
        "roots(digest) AS ({roots}),
         reach(root, digest, kind) AS (
           SELECT digest, digest, 'manifest' FROM roots
           UNION
           SELECT r.root, mr.child, mr.kind FROM reach r
             JOIN manifest_references mr ON mr.repository_id = $1 AND mr.parent = r.digest
           WHERE r.kind = 'manifest'),
         sizes(digest, size) AS (
           SELECT r.root, CAST(SUM(COALESCE(m.size, b.size, 0)) AS BIGINT) FROM reach r
             LEFT JOIN manifests m ON r.kind = 'manifest' AND m.repository_id = $1
                                  AND m.digest = r.digest
             LEFT JOIN blobs b ON r.kind = 'blob' AND b.digest = r.digest
           GROUP BY r.root)"
    )
}

/// Stores the total size of manifest `digest` of repository `repo` from
/// its stored references (a just-written index whose children are all
/// here): one recursive query over that image's references alone.
pub(crate) async fn store_total(
    conn: &mut AnyConnection,
    repo: i64,
    digest: &Digest,
) -> Result<()> {
    let sql = format!(
        "UPDATE manifests SET total_size = (WITH RECURSIVE {cte} SELECT size FROM sizes)
         WHERE repository_id = $1 AND digest = $2",
        cte = sizes_cte("SELECT CAST($2 AS TEXT)")
    );
    sqlx::query(&sql)
        .bind(repo)
        .bind(digest.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Meta {
    /// The page `query` asks for of `repository`'s tags; `None` if the
    /// repository does not exist.
    pub async fn tag_page(
        &self,
        repository: &RepositoryName,
        query: &TagPageQuery,
    ) -> Result<Option<TagPage>> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let repo: i64 = row.try_get(0)?;
        let filter = match self.dialect() {
            Dialect::Sqlite => "($2 = '' OR instr(t.name, $2) > 0)",
            Dialect::Postgres => "($2 = '' OR strpos(t.name, $2) > 0)",
        };
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM tags t WHERE t.repository_id = $1 AND {filter}"
        ))
        .bind(repo)
        .bind(query.contains.as_str())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
        // By size along the index `manifests_total_size`, unless some
        // manifest has no stored total (mirrored content): then every
        // filtered tag's size is computed and sorted.
        let by_stored_size = query.order == TagOrder::Size
            && sqlx::query(
                "SELECT 1 FROM manifests WHERE repository_id = $1 AND total_size IS NULL LIMIT 1",
            )
            .bind(repo)
            .fetch_optional(&mut *conn)
            .await?
            .is_none();
        let dir = if query.descending { "DESC" } else { "ASC" };
        // `p` is the table the page's manifest columns come from: `m`
        // inside the page's query, the page itself outside it.
        let order = |p: &str| match query.order {
            TagOrder::Name => format!("t.name {dir}"),
            TagOrder::Pushed => format!("{p}.pushed_at {dir}, t.updated_at {dir}, t.name {dir}"),
            TagOrder::Size if by_stored_size => format!("{p}.total_size {dir}, t.name {dir}"),
            TagOrder::Size => format!("COALESCE(m.total_size, s.size, 0) {dir}, t.name {dir}"),
            TagOrder::Pulls => format!("t.pull_count {dir}, t.name {dir}"),
        };
        let columns = "t.name, t.digest, m.media_type, m.pushed_at, t.updated_at, \
                       t.pull_count, t.last_pulled_at";
        // By push time (or stored size) the manifests lead, in the order
        // of their index (`CROSS JOIN` keeps SQLite from starting at the
        // tags and sorting them all; PostgreSQL plans it as any join).
        let from_tags = "tags t JOIN manifests m ON m.repository_id = t.repository_id \
                         AND m.digest = t.digest";
        let where_repo = "WHERE t.repository_id = $1";
        let from = if query.order == TagOrder::Pushed || by_stored_size {
            "manifests m CROSS JOIN tags t WHERE m.repository_id = $1 \
             AND t.repository_id = m.repository_id AND t.digest = m.digest"
                .to_owned()
        } else {
            format!("{from_tags} {where_repo}")
        };
        let sql = if query.order == TagOrder::Size && !by_stored_size {
            // Every filtered tag's stored size (computed for those without
            // one), sorted, then cut.
            let roots = format!(
                "SELECT DISTINCT t.digest FROM tags t JOIN manifests m
                   ON m.repository_id = t.repository_id AND m.digest = t.digest
                 WHERE t.repository_id = $1 AND m.total_size IS NULL AND {filter}"
            );
            format!(
                "WITH RECURSIVE {cte}
                 SELECT {columns}, COALESCE(m.total_size, s.size, 0)
                 FROM {from_tags} LEFT JOIN sizes s ON s.digest = t.digest
                 {where_repo} AND {filter}
                 ORDER BY {order} LIMIT $3 OFFSET $4",
                cte = sizes_cte(&roots),
                order = order("m"),
            )
        } else {
            // The page first, then the sizes of its images without a
            // stored one.
            format!(
                "WITH RECURSIVE page AS MATERIALIZED (
                   SELECT {columns}, m.total_size FROM {from} AND {filter}
                   ORDER BY {inner} LIMIT $3 OFFSET $4),
                 {cte}
                 SELECT t.name, t.digest, t.media_type, t.pushed_at, t.updated_at,
                        t.pull_count, t.last_pulled_at, COALESCE(t.total_size, s.size, 0)
                 FROM page t LEFT JOIN sizes s ON s.digest = t.digest
                 ORDER BY {outer}",
                cte = sizes_cte("SELECT DISTINCT digest FROM page WHERE total_size IS NULL"),
                inner = order("m"),
                outer = order("t"),
            )
        };
        let tags = sqlx::query(&sql)
            .bind(repo)
            .bind(query.contains.as_str())
            .bind(i64::from(query.limit))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(TagRow {
                    name: tag_at(r, 0)?,
                    digest: digest_at(r, 1)?,
                    media_type: r.try_get(2)?,
                    pushed_at: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                    pull_count: r.try_get(5)?,
                    last_pulled_at: r.try_get(6)?,
                    size: r.try_get::<i64, _>(7)?.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let latest = sqlx::query(
            "SELECT name, digest FROM tags WHERE repository_id = $1 AND name = 'latest'",
        )
        .bind(repo)
        .fetch_optional(&mut *conn)
        .await?;
        let featured = match latest {
            Some(r) => Some(r),
            None => {
                sqlx::query(
                    "SELECT t.name, t.digest FROM manifests m CROSS JOIN tags t
                     WHERE m.repository_id = $1 AND t.repository_id = m.repository_id
                       AND t.digest = m.digest
                     ORDER BY m.pushed_at DESC, t.name DESC LIMIT 1",
                )
                .bind(repo)
                .fetch_optional(&mut *conn)
                .await?
            }
        }
        .map(|r| Ok::<_, crate::Error>((tag_at(&r, 0)?, digest_at(&r, 1)?)))
        .transpose()?;
        Ok(Some(TagPage {
            total: total.max(0) as u64,
            tags,
            featured,
        }))
    }
}
