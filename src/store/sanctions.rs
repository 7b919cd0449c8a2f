//! Sanctions list versions (with their files), screenings, and the re-screening of users.

use super::jobs::{self, NewJob};
use super::{Store, StoreError, StoreResult, Tx, pin_unit};
use crate::domain::cip::CipState;
use crate::domain::sanctions_list::{ListCounts, ListFiles, ListSource};
use crate::domain::{PartnerId, UserId};

/// One loaded list publication.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListVersion {
    pub id: i64,
    /// Which list this is a version of.
    pub list: ListSource,
    /// Of the publication's files, hex.
    #[serde(serialize_with = "hex_digest")]
    #[schema(value_type = String)]
    pub sha256: Vec<u8>,
    pub published_on: Option<String>,
    pub source: String,
    pub counts: ListCounts,
    pub loaded_at: i64,
}

fn hex_digest<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: i64,
    list: String,
    sha256: Vec<u8>,
    published_on: Option<String>,
    source: String,
    entries: i64,
    alt_rows: i64,
    address_rows: i64,
    comment_rows: i64,
    orphan_rows: i64,
    loaded_at: i64,
}

impl TryFrom<ListRow> for ListVersion {
    type Error = StoreError;
    fn try_from(row: ListRow) -> StoreResult<Self> {
        let n = |v: i64| v.max(0) as u64;
        let list = ListSource::parse(&row.list)
            .ok_or_else(|| StoreError::Corrupt(format!("sanctions list {}: list {:?}", row.id, row.list)))?;
        Ok(ListVersion {
            id: row.id,
            list,
            sha256: row.sha256,
            published_on: row.published_on,
            source: row.source,
            counts: ListCounts {
                entries: n(row.entries),
                alt_rows: n(row.alt_rows),
                address_rows: n(row.address_rows),
                comment_rows: n(row.comment_rows),
                orphan_rows: n(row.orphan_rows),
            },
            loaded_at: row.loaded_at,
        })
    }
}

macro_rules! list_columns {
    () => {
        "id, list, sha256, published_on, source, entries, alt_rows, address_rows, comment_rows, orphan_rows, loaded_at"
    };
}

/// A list to store (which list it is, its files say); `rescreen` is the job that re-screens
/// users against it.
pub struct NewList {
    pub files: ListFiles,
    pub sha256: [u8; 32],
    pub published_on: Option<String>,
    pub source: String,
    pub counts: ListCounts,
    pub rescreen: NewJob,
}

/// One screening to record.
#[derive(Debug, Clone)]
pub struct NewScreening {
    pub list_id: i64,
    pub partner: Option<PartnerId>,
    pub user: Option<UserId>,
    pub actor: String,
    /// The query as JSON text.
    pub query: String,
    pub decision: String,
    pub top_score: Option<f64>,
    /// The candidates as JSON text.
    pub matches: String,
    pub created_at: i64,
}

/// A user that screening can look at: the name parts, date of birth and country.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScreenablePerson {
    pub id: i64,
    pub partner_id: i64,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub second_last_name: Option<String>,
    pub date_of_birth: Option<String>,
    pub country: Option<String>,
    pub cip_status: Option<String>,
    pub cip_detail: Option<String>,
    /// The partner's choice of lists (`partners.sanctions_lists`); `None`: every list.
    pub sanctions_lists: Option<String>,
}

impl ScreenablePerson {
    pub fn full_name(&self) -> String {
        [&self.first_name, &self.middle_name, &self.last_name, &self.second_last_name]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn cip_state(&self) -> StoreResult<Option<CipState>> {
        stored_cip_state(self.id, self.cip_status.as_deref(), self.cip_detail.as_deref())
    }
}

/// Decodes a user's `cip_status`/`cip_detail` columns (both NULL: never in the CIP machine).
pub(super) fn stored_cip_state(user: i64, status: Option<&str>, detail: Option<&str>) -> StoreResult<Option<CipState>> {
    match (status, detail) {
        (Some(status), Some(detail)) => {
            let corrupt = |_| StoreError::Corrupt(format!("user {user}: CIP state"));
            Ok(Some(CipState::new(status.parse().map_err(corrupt)?, detail.parse().map_err(corrupt)?)))
        }
        _ => Ok(None),
    }
}

/// Sets the lists a partner's users are screened against (`None`: every list), in the open
/// transaction; false when there is no such partner.
pub async fn set_partner_lists(tx: &mut Tx<'_>, partner: PartnerId, lists: Option<&str>) -> StoreResult<bool> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query("UPDATE partners SET sanctions_lists = $1 WHERE id = $2")
            .bind(lists)
            .bind(partner.get())
            .execute(conn)
            .await?
            .rows_affected()
    }) == 1)
}

/// A partner's choice of lists as stored, under the partner's row lock: `None` when there is
/// no such partner, `Some(None)` for every list.
pub async fn lock_partner_lists(tx: &mut Tx<'_>, partner: PartnerId) -> StoreResult<Option<Option<String>>> {
    Ok(on_tx!(tx, |conn| {
        // The UPDATE of no column takes PostgreSQL's row lock as SQLite's single writer does.
        sqlx::query_scalar(
            "UPDATE partners SET sanctions_lists = sanctions_lists WHERE id = $1 RETURNING sanctions_lists",
        )
        .bind(partner.get())
        .fetch_optional(conn)
        .await?
    }))
}

/// Inserts one screening row in the open transaction; returns its id.
pub async fn insert_screening(tx: &mut Tx<'_>, s: &NewScreening) -> StoreResult<i64> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO screenings (list_id, partner_id, user_id, actor, query, decision, top_score, matches, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(s.list_id)
        .bind(s.partner.map(|p| p.get()))
        .bind(s.user.map(|u| u.get()))
        .bind(&s.actor)
        .bind(&s.query)
        .bind(&s.decision)
        .bind(s.top_score)
        .bind(&s.matches)
        .bind(s.created_at)
        .fetch_one(conn)
        .await?
    }))
}

/// Inserts many screening rows in the open transaction, as multi-row statements: a
/// re-screening page records 500 at once, and one statement each held the single SQLite writer
/// (and every `POST /User` behind it) for tens of milliseconds (BENCHMARKS.md, issue 27).
pub async fn insert_screenings(tx: &mut Tx<'_>, screenings: &[&NewScreening]) -> StoreResult<()> {
    // 9 parameters a row: 1,000 rows stay far below either database's limit.
    for chunk in screenings.chunks(1_000) {
        on_tx!(tx, |conn| {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO screenings (list_id, partner_id, user_id, actor, query, decision, top_score, matches, created_at) ",
            );
            insert.push_values(chunk, |mut row, s| {
                row.push_bind(s.list_id)
                    .push_bind(s.partner.map(|p| p.get()))
                    .push_bind(s.user.map(|u| u.get()))
                    .push_bind(&s.actor)
                    .push_bind(&s.query)
                    .push_bind(&s.decision)
                    .push_bind(s.top_score)
                    .push_bind(&s.matches)
                    .push_bind(s.created_at);
            });
            // Each chunk size is a new text: not worth a place in the connection's cache.
            insert.build().persistent(false).execute(&mut *conn).await.map(drop)?
        });
    }
    Ok(())
}

/// The newest screening of a user, in the open transaction: (list id, candidates JSON).
pub async fn latest_user_screening(tx: &mut Tx<'_>, user: i64) -> StoreResult<Option<(i64, String)>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as("SELECT list_id, matches FROM screenings WHERE user_id = $1 ORDER BY id DESC LIMIT 1")
            .bind(user)
            .fetch_optional(conn)
            .await?
    }))
}

/// One listed entry a compliance officer cleared a user of, as the list described it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct ClearedMatch {
    pub user_id: i64,
    pub entity_id: i64,
    pub fingerprint: String,
}

/// The clearances of one user, in the open transaction.
pub async fn cleared_matches(tx: &mut Tx<'_>, user: i64) -> StoreResult<Vec<ClearedMatch>> {
    Ok(on_tx!(tx, |conn| {
        sqlx::query_as("SELECT user_id, entity_id, fingerprint FROM cleared_matches WHERE user_id = $1")
            .bind(user)
            .fetch_all(conn)
            .await?
    }))
}

/// Remembers a clearance in the open transaction (the same one again is a no-op).
pub async fn insert_cleared_match(
    tx: &mut Tx<'_>,
    cleared: &ClearedMatch,
    list_id: i64,
    actor: &str,
    now: i64,
) -> StoreResult<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO cleared_matches (user_id, entity_id, fingerprint, list_id, cleared_by, cleared_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(cleared.user_id)
        .bind(cleared.entity_id)
        .bind(&cleared.fingerprint)
        .bind(list_id)
        .bind(actor)
        .bind(now)
        .execute(conn)
        .await?
        .rows_affected()
    });
    Ok(())
}

/// Stores a list version with its files and enqueues its re-screening, in the open
/// transaction. Returns the version and whether it is new (the same files loaded again change
/// nothing).
pub async fn insert_list(tx: &mut Tx<'_>, list: &NewList, now: i64) -> StoreResult<(ListVersion, bool)> {
    let inserted: Option<i64> = on_tx!(tx, |conn| {
        sqlx::query_scalar(
            "INSERT INTO sanctions_lists (list, sha256, published_on, source, entries, alt_rows, address_rows, comment_rows, orphan_rows, loaded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (sha256) DO NOTHING RETURNING id",
        )
        .bind(list.files.source().as_str())
        .bind(&list.sha256[..])
        .bind(list.published_on.as_deref())
        .bind(&list.source)
        .bind(list.counts.entries as i64)
        .bind(list.counts.alt_rows as i64)
        .bind(list.counts.address_rows as i64)
        .bind(list.counts.comment_rows as i64)
        .bind(list.counts.orphan_rows as i64)
        .bind(now)
        .fetch_optional(conn)
        .await?
    });
    if let Some(id) = inserted {
        for name in list.files.names() {
            on_tx!(tx, |conn| {
                sqlx::query("INSERT INTO sanctions_list_files (list_id, name, content) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(name)
                    .bind(list.files.get(name).unwrap_or_default())
                    .execute(conn)
                    .await
                    .map(drop)?
            });
        }
        let mut job = list.rescreen.clone();
        job.payload["listId"] = id.into();
        job.dedupe_key = Some(format!("sanctions.rescreen:{id}:0"));
        jobs::enqueue(tx, &job, now).await?;
    }
    let row: ListRow = on_tx!(tx, |conn| {
        sqlx::query_as(concat!("SELECT ", list_columns!(), " FROM sanctions_lists WHERE sha256 = $1"))
            .bind(&list.sha256[..])
            .fetch_one(conn)
            .await?
    });
    Ok((ListVersion::try_from(row)?, inserted.is_some()))
}

impl Store {
    /// Stores a list version with its files and enqueues its re-screening, in one write (see
    /// `insert_list`).
    pub async fn insert_sanctions_list(&self, list: NewList, now: i64) -> StoreResult<(ListVersion, bool)> {
        self.write(move |mut tx| pin_unit(async move { insert_list(&mut tx, &list, now).await })).await
    }

    /// The newest version of each list loaded, in `ListSource` order.
    pub async fn current_sanctions_lists(&self) -> StoreResult<Vec<ListVersion>> {
        let rows: Vec<ListRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                list_columns!(),
                " FROM sanctions_lists WHERE id IN (SELECT max(id) FROM sanctions_lists GROUP BY list)"
            ))
            .fetch_all(pool)
            .await?
        });
        let mut versions = rows.into_iter().map(ListVersion::try_from).collect::<StoreResult<Vec<_>>>()?;
        versions.sort_by_key(|v| v.list);
        Ok(versions)
    }

    /// The files of one stored version.
    pub async fn sanctions_list_files(&self, version: &ListVersion) -> StoreResult<ListFiles> {
        let rows: Vec<(String, Vec<u8>)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT name, content FROM sanctions_list_files WHERE list_id = $1")
                .bind(version.id)
                .fetch_all(pool)
                .await?
        });
        let mut files = ListFiles::new(version.list);
        for (name, content) in rows {
            if !files.set(&name, content) {
                return Err(StoreError::Corrupt(format!("sanctions list {}: a file {name:?}", version.id)));
            }
        }
        Ok(files)
    }

    /// Every loaded sanctions list version, newest first.
    pub async fn sanctions_lists(&self, limit: i64) -> StoreResult<Vec<ListVersion>> {
        let rows: Vec<ListRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", list_columns!(), " FROM sanctions_lists ORDER BY id DESC LIMIT $1"))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(ListVersion::try_from).collect()
    }

    /// The screenings of one user, newest first: (list id, decision, top score, matches JSON).
    pub async fn user_screenings(&self, user: i64) -> StoreResult<Vec<(i64, String, Option<f64>, String)>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT list_id, decision, top_score, matches FROM screenings WHERE user_id = $1 ORDER BY id DESC",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The lists a partner's users are screened against, as stored (`None`: every list).
    pub async fn partner_sanctions_lists(&self, partner: i64) -> StoreResult<Option<String>> {
        let row: Option<Option<String>> = with_pool!(self, read, |pool| {
            sqlx::query_scalar("SELECT sanctions_lists FROM partners WHERE id = $1")
                .bind(partner)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.flatten())
    }

    /// Users with a last name and an id above `after` (of one partner, or of all), in id
    /// order: one page of re-screening.
    pub async fn screenable_people(
        &self,
        after: i64,
        limit: i64,
        partner: Option<i64>,
    ) -> StoreResult<Vec<ScreenablePerson>> {
        macro_rules! select {
            ($partner:literal) => {
                concat!(
                    "SELECT u.id, u.partner_id, u.first_name, u.middle_name, u.last_name, u.second_last_name, u.date_of_birth,
                            u.country, u.cip_status, u.cip_detail, p.sanctions_lists
                     FROM users u JOIN partners p ON p.id = u.partner_id
                     WHERE u.last_name IS NOT NULL AND u.id > $1",
                    $partner,
                    " ORDER BY u.id LIMIT $2"
                )
            };
        }
        Ok(with_pool!(self, read, |pool| {
            match partner {
                Some(partner) => {
                    sqlx::query_as(select!(" AND u.partner_id = $3")).bind(after).bind(limit).bind(partner)
                }
                None => sqlx::query_as(select!("")).bind(after).bind(limit),
            }
            .fetch_all(pool)
            .await?
        }))
    }
}
