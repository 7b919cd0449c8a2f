//! Seed 000 registrations: insert-or-return by (partner, externalUserId), and the node's memory
//! of recent ones.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Store, StoreError, StoreResult};
use crate::domain::{PartnerId, UserId};

/// A registration as stored (the comparison form: e-mail as spelled, phone in E.164).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RegistrationRecord {
    pub id: i64,
    pub public_id: String,
    pub external_user_id: String,
    pub auth_method: String,
    pub identifier: Option<String>,
    pub user_type: String,
    pub alias: Option<String>,
    pub created_at: i64,
}

impl RegistrationRecord {
    pub fn user_id(&self) -> Result<UserId, StoreError> {
        UserId::new(self.id).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

/// What a registration call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A new user.
    Created(RegistrationRecord),
    /// The partner already registered this externalUserId: the stored registration.
    Existing(RegistrationRecord),
}

impl Store {
    /// The partner's registration for `external_user_id`, if any.
    pub async fn find_registration(
        &self,
        partner: PartnerId,
        external_user_id: &str,
    ) -> StoreResult<Option<RegistrationRecord>> {
        let found = with_pool!(self, read, |pool| {
            sqlx::query_as(concat!(
                "SELECT ",
                registration_columns!(),
                " FROM users WHERE partner_id = $1 AND external_user_id = $2"
            ))
            .bind(partner.get())
            .bind(external_user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found)
    }
}

/// Registrations this node has recently committed or read, so that a repeated call (a partner
/// retrying after a timeout, usually within seconds) is answered from memory instead of a
/// database round trip, and a new `externalUserId` goes straight to the writer.
///
/// Correct across nodes without any invalidation because a registration never changes once
/// committed: no statement updates or deletes its columns (`registration_columns!`), and an
/// entry is only ever taken from a committed row. A miss is always safe: the writer's insert lets
/// the unique index decide and reads the existing row back. Should registrations ever become
/// erasable, erasure must clear this cache on every node.
///
/// Two generations bound memory with O(1) work: when the current map is full it becomes the
/// previous one (the older previous is dropped) and a hit in the previous map moves forward.
pub struct RecentRegistrations {
    generations: Mutex<Generations>,
    capacity: usize,
}

type RegistrationKey = (i64, String);

#[derive(Default)]
struct Generations {
    current: HashMap<RegistrationKey, RegistrationRecord>,
    previous: HashMap<RegistrationKey, RegistrationRecord>,
}

impl RecentRegistrations {
    /// Holds at most `2 × capacity` registrations (≈ 300 bytes each); 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        Self { generations: Mutex::default(), capacity }
    }

    pub fn get(&self, partner: PartnerId, external_user_id: &str) -> Option<RegistrationRecord> {
        if self.capacity == 0 {
            return None;
        }
        let key = (partner.get(), external_user_id.to_owned());
        let mut generations = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(record) = generations.current.get(&key) {
            return Some(record.clone());
        }
        let record = generations.previous.remove(&key)?;
        generations.insert(key, record.clone(), self.capacity);
        Some(record)
    }

    /// Remembers a committed registration of `partner`.
    pub fn insert(&self, partner: PartnerId, record: &RegistrationRecord) {
        if self.capacity == 0 {
            return;
        }
        let key = (partner.get(), record.external_user_id.clone());
        self.generations.lock().unwrap_or_else(|p| p.into_inner()).insert(key, record.clone(), self.capacity);
    }
}

impl Generations {
    fn insert(&mut self, key: RegistrationKey, record: RegistrationRecord, capacity: usize) {
        if self.current.len() >= capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(external_user_id: &str) -> RegistrationRecord {
        RegistrationRecord {
            id: 1,
            public_id: "usr:0".into(),
            external_user_id: external_user_id.into(),
            auth_method: "NONE".into(),
            identifier: None,
            user_type: "INDIVIDUAL".into(),
            alias: None,
            created_at: 0,
        }
    }

    #[test]
    fn entries_are_per_partner() {
        let recent = RecentRegistrations::new(8);
        let (a, b) = (PartnerId::new(1).unwrap(), PartnerId::new(2).unwrap());
        recent.insert(a, &record("x"));
        assert_eq!(recent.get(a, "x"), Some(record("x")));
        assert_eq!(recent.get(b, "x"), None);
        assert_eq!(recent.get(a, "y"), None);
    }

    #[test]
    fn memory_is_bounded_and_recently_used_entries_survive() {
        let recent = RecentRegistrations::new(2);
        let p = PartnerId::new(1).unwrap();
        for id in ["a", "b", "c"] {
            recent.insert(p, &record(id)); // "c" retires {a, b} to the previous generation
        }
        assert!(recent.get(p, "a").is_some()); // moves "a" forward: current = {c, a}
        recent.insert(p, &record("d")); // current full: previous = {c, a}, current = {d}
        assert!(recent.get(p, "b").is_none(), "two generations back is forgotten");
        assert!(recent.get(p, "a").is_some());
        let generations = recent.generations.lock().unwrap();
        assert!(generations.current.len() + generations.previous.len() <= 4);
    }

    #[test]
    fn capacity_zero_is_off() {
        let recent = RecentRegistrations::new(0);
        let p = PartnerId::new(1).unwrap();
        recent.insert(p, &record("x"));
        assert_eq!(recent.get(p, "x"), None);
    }
}
