//! Sanctions list versions (with their files), screenings, and the re-screening of users.

use super::jobs::{ClaimedJob, NewJob, complete_in, enqueue_in};
use super::{Store, StoreError, StoreResult};
use crate::domain::cip::{CipState, Transition};
use crate::domain::{PartnerId, UserId};
use crate::sanctions::{ListCounts, ListFiles};

/// One loaded list publication.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListVersion {
    pub id: i64,
    #[serde(serialize_with = "hex_digest")]
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

impl From<ListRow> for ListVersion {
    fn from(row: ListRow) -> Self {
        let n = |v: i64| v.max(0) as u64;
        ListVersion {
            id: row.id,
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
        }
    }
}

macro_rules! list_columns {
    () => {
        "id, sha256, published_on, source, entries, alt_rows, address_rows, comment_rows, orphan_rows, loaded_at"
    };
}

/// A list to store; `rescreen` is the job that re-screens users against it.
pub struct NewList<'a> {
    pub files: &'a ListFiles,
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

/// What re-screening one user produced: its screening and, when it newly matches, the move to
/// `Compliance`.
pub struct RescreenOutcome {
    pub user_id: i64,
    pub partner_id: i64,
    pub screening: NewScreening,
    pub transition: Option<Transition>,
}

/// Inserts one screening row inside the caller's transaction.
macro_rules! insert_screening_in {
    ($conn:expr, $s:expr) => {{
        let s: &NewScreening = $s;
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
        .fetch_one(&mut *$conn)
        .await?
    }};
}
pub(crate) use insert_screening_in;

/// Applies a CIP transition to a user and appends its event, inside the caller's transaction.
/// The `UPDATE` re-checks the state it expects, so a concurrent move is not overwritten.
macro_rules! transition_in {
    ($conn:expr, $user:expr, $partner:expr, $t:expr, $now:expr) => {{
        let t: &Transition = $t;
        let moved = sqlx::query(
            "UPDATE users SET cip_status = $1, cip_detail = $2
             WHERE id = $3 AND partner_id = $4 AND cip_status IS NOT DISTINCT FROM $5 AND cip_detail IS NOT DISTINCT FROM $6",
        )
        .bind(t.to.status.as_str())
        .bind(t.to.detail.as_str())
        .bind($user)
        .bind($partner)
        .bind(t.from.map(|s| s.status.as_str()))
        .bind(t.from.map(|s| s.detail.as_str()))
        .execute(&mut *$conn)
        .await?
        .rows_affected();
        if moved == 1 {
            sqlx::query(
                "INSERT INTO user_events (user_id, partner_id, at, from_status, from_detail, to_status, to_detail, reason, actor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind($user)
            .bind($partner)
            .bind($now)
            .bind(t.from.map(|s| s.status.as_str()))
            .bind(t.from.map(|s| s.detail.as_str()))
            .bind(t.to.status.as_str())
            .bind(t.to.detail.as_str())
            .bind(&t.reason)
            .bind(&t.actor)
            .execute(&mut *$conn)
            .await?;
        }
        moved == 1
    }};
}
pub(crate) use transition_in;

impl Store {
    /// Stores a list version with its files and enqueues its re-screening, in one transaction.
    /// Returns the version and whether it is new (the same files loaded again change nothing).
    pub async fn insert_sanctions_list(&self, list: &NewList<'_>, now: i64) -> StoreResult<(ListVersion, bool)> {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO sanctions_lists (sha256, published_on, source, entries, alt_rows, address_rows, comment_rows, orphan_rows, loaded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (sha256) DO NOTHING RETURNING id",
            )
            .bind(&list.sha256[..])
            .bind(list.published_on.as_deref())
            .bind(&list.source)
            .bind(list.counts.entries as i64)
            .bind(list.counts.alt_rows as i64)
            .bind(list.counts.address_rows as i64)
            .bind(list.counts.comment_rows as i64)
            .bind(list.counts.orphan_rows as i64)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = inserted {
                for name in ListFiles::NAMES {
                    sqlx::query("INSERT INTO sanctions_list_files (list_id, name, content) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(name)
                        .bind(list.files.get(name).unwrap_or_default())
                        .execute(&mut *tx)
                        .await?;
                }
                let mut job = list.rescreen.clone();
                job.payload["listId"] = id.into();
                job.dedupe_key = Some(format!("sanctions.rescreen:{id}:0"));
                enqueue_in!(tx, &job, now);
            }
            let row: ListRow =
                sqlx::query_as(concat!("SELECT ", list_columns!(), " FROM sanctions_lists WHERE sha256 = $1"))
                    .bind(&list.sha256[..])
                    .fetch_one(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok((ListVersion::from(row), inserted.is_some()))
        })
    }

    /// The newest list version, if any was loaded.
    pub async fn current_sanctions_list(&self) -> StoreResult<Option<ListVersion>> {
        let row: Option<ListRow> = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!("SELECT ", list_columns!(), " FROM sanctions_lists ORDER BY id DESC LIMIT 1"))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(ListVersion::from))
    }

    pub async fn sanctions_list_files(&self, id: i64) -> StoreResult<ListFiles> {
        let rows: Vec<(String, Vec<u8>)> = with_pool!(self, read, |pool| {
            sqlx::query_as("SELECT name, content FROM sanctions_list_files WHERE list_id = $1")
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        let mut files = ListFiles::default();
        for (name, content) in rows {
            files.set(&name, content);
        }
        Ok(files)
    }

    pub async fn record_screening(&self, screening: &NewScreening) -> StoreResult<i64> {
        with_pool!(self, write, |pool| {
            let mut conn = pool.acquire().await?;
            Ok(insert_screening_in!(conn, screening))
        })
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

    /// Users with a last name and an id above `after`, in id order: one page of re-screening.
    pub async fn screenable_people(&self, after: i64, limit: i64) -> StoreResult<Vec<ScreenablePerson>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT id, partner_id, first_name, middle_name, last_name, second_last_name, date_of_birth, country,
                        cip_status, cip_detail
                 FROM users WHERE last_name IS NOT NULL AND id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Commits one page of re-screening: the screenings, the moves to `Compliance`, the next
    /// page's job and this job's completion, all or nothing. Returns how many users moved, or
    /// `None` when this worker had lost the job's lease (then nothing is written).
    pub async fn commit_rescreen_page(
        &self,
        job: &ClaimedJob,
        outcomes: &[RescreenOutcome],
        next: Option<&NewJob>,
        now: i64,
    ) -> StoreResult<Option<u64>> {
        with_pool!(self, write, |pool| {
            let mut tx = pool.begin().await?;
            if !complete_in!(tx, job, now) {
                return Ok(None);
            }
            let mut moved = 0;
            for outcome in outcomes {
                insert_screening_in!(tx, &outcome.screening);
                if let Some(transition) = &outcome.transition
                    && transition_in!(tx, outcome.user_id, outcome.partner_id, transition, now)
                {
                    moved += 1;
                }
            }
            if let Some(next) = next {
                enqueue_in!(tx, next, now);
            }
            tx.commit().await?;
            Ok(Some(moved))
        })
    }

    /// The CIP events of a user, oldest first: (at, from, to, reason, actor).
    pub async fn user_events(&self, user: i64) -> StoreResult<Vec<UserEvent>> {
        Ok(with_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT at, from_status, from_detail, to_status, to_detail, reason, actor FROM user_events
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user)
            .fetch_all(pool)
            .await?
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent {
    pub at: i64,
    pub from_status: Option<String>,
    pub from_detail: Option<String>,
    pub to_status: String,
    pub to_detail: String,
    pub reason: String,
    pub actor: String,
}
