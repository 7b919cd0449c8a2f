//! Seeds 000 and 001: registrations a partner makes by itself, without the CIP machine. Both
//! take the hot paths' writer (`store::UserWriter`, group-committed when so configured).

use crate::domain::{Alias, Email, PartnerId, PartnerRegistration, PublicUserId, SignIn};
use crate::store::{
    IdempotencyScope, NewMinimalUser, NewRegistration, RecentRegistrations, Registered, RegistrationRecord, Respond,
    StoreResult, UserRecord, UserWriter,
};

/// Seed 001: a new minimal user, every time (the seed has no duplicate rule); with `complete`,
/// the Idempotency-Key's answer is stored in the same commit.
pub async fn create_user(
    users: &UserWriter,
    partner: PartnerId,
    email: Option<Email>,
    additional_data: Option<String>,
    complete: Option<(IdempotencyScope, Respond)>,
    now: i64,
) -> StoreResult<UserRecord> {
    let user = NewMinimalUser { partner, public_id: PublicUserId::generate(), email, additional_data, created_at: now };
    users.create(user, complete).await
}

/// What a seed-000 registration came to.
#[derive(Debug)]
pub enum PartnerRegistered {
    Created(RegistrationRecord),
    /// The same registration again: the same answer.
    Replayed(RegistrationRecord),
    /// The `externalUserId` was registered with other data; the fields that differ.
    Conflict(Vec<&'static str>),
}

/// Seed 000: registers `registration` under the partner's `externalUserId`, or finds it was
/// registered before. A replay this node has seen is answered from memory (`recent`); anything
/// else goes to the writer, whose insert lets the unique index decide (concurrent first calls,
/// other nodes' rows) and reads an existing row back in the same transaction.
pub async fn register_partner_user(
    users: &UserWriter,
    recent: &RecentRegistrations,
    partner: PartnerId,
    registration: PartnerRegistration,
    now: i64,
) -> StoreResult<PartnerRegistered> {
    let outcome = match recent.get(partner, registration.external_user_id.as_str()) {
        Some(record) => Registered::Existing(record),
        None => {
            let new = NewRegistration {
                partner,
                public_id: PublicUserId::generate(),
                created_at: now,
                registration: registration.clone(),
            };
            let outcome = users.register(new).await?;
            let (Registered::Created(record) | Registered::Existing(record)) = &outcome;
            recent.insert(partner, record);
            outcome
        }
    };
    Ok(match outcome {
        Registered::Created(record) => PartnerRegistered::Created(record),
        Registered::Existing(record) => match differences(&record, &registration) {
            differ if differ.is_empty() => PartnerRegistered::Replayed(record),
            differ => PartnerRegistered::Conflict(differ),
        },
    })
}

/// The wire names of the fields in which a stored registration differs from a new one. The
/// identifier compares as the service stores it (e-mail normalised, phone as E.164).
pub fn differences(stored: &RegistrationRecord, incoming: &PartnerRegistration) -> Vec<&'static str> {
    let mut differ = Vec::new();
    if stored.auth_method != incoming.sign_in.method().as_str() {
        differ.push("method");
    }
    let same_identifier = match (&incoming.sign_in, stored.identifier.as_deref()) {
        (SignIn::Email(email), Some(stored)) => {
            Email::parse(stored).is_ok_and(|s| s.normalized() == email.normalized())
        }
        (SignIn::Phone(phone), Some(stored)) => stored == phone.e164(),
        (SignIn::None, None) => true,
        _ => false,
    };
    if !same_identifier {
        differ.push("identifier");
    }
    if stored.user_type != incoming.user_type.as_str() {
        differ.push("type");
    }
    if stored.alias.as_deref() != incoming.alias.as_ref().map(Alias::as_str) {
        differ.push("alias");
    }
    differ
}
