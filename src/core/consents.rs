//! Consents confirmed by one-time code (seed 002's `OtpPrivacyMissing` / `OtpContractMissing`):
//! send a code for one consent to the user's phone (SMS) or e-mail address, then record the
//! consent when the partner posts the code back, with its evidence (when, to which masked
//! address, which document version). The rules are the sign-up code's: hashed, 10 minutes,
//! 5 attempts, one send a minute. Each function is one write.

use serde::{Deserialize, Serialize};

use super::onboarding::{MoveError, decide};
use crate::domain::cip::{CipState, Status};
use crate::domain::consent::{ConsentCode, ConsentConfirmation, ConsentKind, DocumentVersion, OtpChannel};
use crate::domain::{Partner, PartnerId, PublicUserId, secs_to_ms};
use crate::mail::{MAIL_JOB, Outgoing};
use crate::pii::{MaskedEmail, MaskedPhone};
use crate::sms::{SMS_JOB, TextMessage};
use crate::store::consents::{self, ConsentEvidence, NewConsentCode};
use crate::store::{NewJob, ProspectRecord, Store, StoreError, Tx, Whose, boxed, jobs, prospects};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    /// How long a consent code is accepted.
    pub code_ttl_secs: u64,
    /// Wrong codes before the code is spent (a new one must be sent).
    pub max_attempts: u32,
    /// Least time between two codes for one consent of one user.
    pub resend_interval_secs: u64,
    /// Codes for one consent of one user in a day: with `max_attempts`, what bounds guessing
    /// (5 × 5 = 25 tries a day against a million codes).
    pub max_sends_per_day: u32,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self { code_ttl_secs: 600, max_attempts: 5, resend_interval_secs: 60, max_sends_per_day: 5 }
    }
}

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("no such user")]
    NotFound,
    #[error("the user is not in onboarding")]
    NotInOnboarding,
    #[error("the {0} consent was already given")]
    AlreadyGiven(ConsentKind),
    #[error("the user has no {0} on file to send a code to")]
    NoDestination(OtpChannel),
    #[error("no SMS provider is configured; send the code by e-mail")]
    SmsUnavailable,
    #[error("a code was sent moments ago")]
    TooSoon { retry_after_ms: i64 },
    #[error("this partner's users confirm consents with a one-time code")]
    CodeRequired,
    #[error("no code was sent for this consent, or it was used")]
    NoCode,
    #[error("the code is not the one sent")]
    WrongCode,
    #[error("the code has expired")]
    Expired,
    #[error("the code was tried too many times")]
    Exhausted,
    #[error(transparent)]
    Move(#[from] MoveError),
}

impl From<StoreError> for ConsentError {
    fn from(e: StoreError) -> Self {
        ConsentError::Move(MoveError::Store(e))
    }
}

/// A partner asking for a code to be sent for one consent of one of its users.
pub struct CodeRequest {
    pub partner: Partner,
    pub user: PublicUserId,
    pub consent: ConsentKind,
    pub channel: OtpChannel,
    pub document: DocumentVersion,
    /// Whether this node can send SMS (a live partner's SMS code needs a provider).
    pub sms_configured: bool,
}

/// What was sent, for the partner: never the code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentCode {
    pub consent: ConsentKind,
    pub channel: OtpChannel,
    /// The destination, masked (`+52******6703`, `a***@example.org`).
    pub sent_to: String,
    pub document_version: String,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

/// Sends a code for one consent: stores its digest in place of any earlier code and enqueues its
/// delivery in the same write (sandbox partners' code is `123456` and goes by e-mail only when
/// asked; by SMS nothing is sent). Refused within `resend_interval_secs` of the previous code.
pub async fn send_code(
    store: &Store,
    settings: &ConsentSettings,
    request: CodeRequest,
    now: i64,
) -> Result<SentCode, ConsentError> {
    let settings = settings.clone();
    store
        .write(move |mut tx| {
            boxed(async move {
                let CodeRequest { partner, user, consent, channel, document, sms_configured } = &request;
                let whose = Whose::Public { user: user.as_str(), partner: partner.id };
                let record = prospects::lock(&mut tx, whose).await?.ok_or(ConsentError::NotFound)?;
                waiting_for(&record, *consent)?;
                let (mut sends, mut window_started_at) = (1, now);
                if let Some(previous) = consents::pending(&mut tx, record.id, *consent).await? {
                    let ready_at = previous.sent_at + secs_to_ms(settings.resend_interval_secs);
                    if now < ready_at {
                        return Err(ConsentError::TooSoon { retry_after_ms: ready_at - now });
                    }
                    if now < previous.window_started_at + DAY_MS {
                        if previous.sends >= i64::from(settings.max_sends_per_day) {
                            return Err(ConsentError::TooSoon {
                                retry_after_ms: previous.window_started_at + DAY_MS - now,
                            });
                        }
                        (sends, window_started_at) = (previous.sends + 1, previous.window_started_at);
                    }
                }
                let code = ConsentCode::issue(partner.environment);
                let expires_at = now + secs_to_ms(settings.code_ttl_secs);
                let (sent_to, delivery) =
                    delivery(&record, partner, *consent, *channel, &code, &settings, *sms_configured, now, expires_at)?;
                let stored = NewConsentCode {
                    user_id: record.id,
                    partner_id: record.partner_id,
                    consent: *consent,
                    channel: *channel,
                    sent_to: sent_to.clone(),
                    document_version: document.as_str().to_owned(),
                    code_hash: code.digest(record.id, *consent),
                    sent_at: now,
                    expires_at,
                    sends,
                    window_started_at,
                };
                consents::replace(&mut tx, &stored).await?;
                if let Some(job) = delivery {
                    jobs::enqueue(&mut tx, &job, now).await?;
                }
                Ok(SentCode {
                    consent: *consent,
                    channel: *channel,
                    sent_to,
                    document_version: stored.document_version,
                    expires_at: stored.expires_at,
                })
            })
        })
        .await
}

/// The masked destination and the job that delivers the code (none for a sandbox SMS).
#[allow(clippy::too_many_arguments)]
fn delivery(
    record: &ProspectRecord,
    partner: &Partner,
    consent: ConsentKind,
    channel: OtpChannel,
    code: &ConsentCode,
    settings: &ConsentSettings,
    sms_configured: bool,
    now: i64,
    expires_at: i64,
) -> Result<(String, Option<NewJob>), ConsentError> {
    let minutes = settings.code_ttl_secs.div_ceil(60);
    let document = match consent {
        ConsentKind::Privacy => "privacy notice",
        ConsentKind::Contract => "contract",
    };
    let job = |kind: &str, payload: serde_json::Value| {
        let mut job = NewJob::new(kind, payload, now);
        job.partner = Some(partner.id);
        job
    };
    match channel {
        OtpChannel::Sms => {
            let phone = record.phone.as_deref().ok_or(ConsentError::NoDestination(channel))?;
            let sent_to = MaskedPhone(phone).to_string();
            if partner.environment == crate::domain::Environment::Sandbox {
                return Ok((sent_to, None));
            }
            if !sms_configured {
                return Err(ConsentError::SmsUnavailable);
            }
            let body = format!(
                "{} is your {} code to accept the {document}. It expires in {minutes} minutes. Do not share it.",
                code.expose(),
                partner.name
            );
            let message = TextMessage { to: phone.to_owned(), body, expires_at: Some(expires_at) };
            Ok((sent_to, Some(job(SMS_JOB, serde_json::to_value(message).expect("messages serialise")))))
        }
        OtpChannel::Email => {
            let email = record.email.as_deref().ok_or(ConsentError::NoDestination(channel))?;
            let outgoing = Outgoing::ConsentCode {
                to: email.to_owned(),
                partner: partner.name.clone(),
                document: document.to_owned(),
                code: code.expose().to_owned(),
                valid_minutes: minutes,
            };
            let payload = serde_json::to_value(outgoing).expect("messages serialise");
            Ok((MaskedEmail(email).to_string(), Some(job(MAIL_JOB, payload))))
        }
    }
}

/// A partner posting back the code its user entered for one consent.
pub struct CodeEntered {
    pub partner: Partner,
    pub user: PublicUserId,
    pub consent: ConsentKind,
    pub code: ConsentCode,
    pub actor: String,
}

/// Records one consent by the code sent for it, with its evidence, and moves a user waiting on
/// it on. A wrong code counts an attempt (committed, though the answer is a refusal); the last
/// allowed one spends the code.
pub async fn give_by_code(
    store: &Store,
    settings: &ConsentSettings,
    entered: CodeEntered,
    now: i64,
) -> Result<Option<CipState>, ConsentError> {
    let max_attempts = i64::from(settings.max_attempts);
    store
        .write(move |mut tx| {
            boxed(async move {
                let CodeEntered { partner, user, consent, code, actor } = &entered;
                let whose = Whose::Public { user: user.as_str(), partner: partner.id };
                let record = prospects::lock(&mut tx, whose).await?.ok_or(ConsentError::NotFound)?;
                // Given already (or not in onboarding): refused before the code is looked at, so
                // no attempt is spent and no second evidence row contradicts the first.
                waiting_for(&record, *consent)?;
                match check_code(&mut tx, &record, *consent, code, max_attempts, now).await? {
                    Ok(evidence) => {
                        let evidence = ConsentEvidence { actor: actor.clone(), ..evidence };
                        Ok::<_, ConsentError>(Ok(record_consents(&mut tx, record, &[(*consent, evidence)], now).await?))
                    }
                    Err(refused) => Ok(Err(refused)),
                }
            })
        })
        .await?
}

/// Consents a partner states its user gave (partners set to `partner` confirmation).
pub struct ConsentsStated {
    pub partner: PartnerId,
    pub user: PublicUserId,
    pub privacy: bool,
    pub contract: bool,
    pub actor: String,
}

/// Records consents the partner states (the first time each is given counts), each with its
/// evidence, and moves a user waiting on them on; refused for partners whose users confirm by
/// code. Returns the user's state after.
pub async fn give_stated(store: &Store, stated: ConsentsStated, now: i64) -> Result<Option<CipState>, ConsentError> {
    store
        .write(move |mut tx| {
            boxed(async move {
                let ConsentsStated { partner, user, privacy, contract, actor } = &stated;
                let whose = Whose::Public { user: user.as_str(), partner: *partner };
                let record = prospects::lock(&mut tx, whose).await?.ok_or(ConsentError::NotFound)?;
                if consents::confirmation(&mut tx, record.partner_id).await? == ConsentConfirmation::Otp {
                    return Err(ConsentError::CodeRequired);
                }
                let stated = |consent: ConsentKind| {
                    let evidence = ConsentEvidence {
                        consent: consent.as_str().to_owned(),
                        method: "partner".into(),
                        channel: None,
                        sent_to: None,
                        document_version: None,
                        code_sent_at: None,
                        given_at: now,
                        actor: actor.clone(),
                    };
                    (consent, evidence)
                };
                let mut given = Vec::new();
                if *privacy && record.privacy_consent_at.is_none() {
                    given.push(stated(ConsentKind::Privacy));
                }
                if *contract && record.contract_consent_at.is_none() {
                    given.push(stated(ConsentKind::Contract));
                }
                record_consents(&mut tx, record, &given, now).await
            })
        })
        .await
}

/// Checks `code` against the pending one: the evidence when it matches, else the refusal
/// (after counting the attempt).
async fn check_code(
    tx: &mut Tx<'_>,
    record: &ProspectRecord,
    consent: ConsentKind,
    code: &ConsentCode,
    max_attempts: i64,
    now: i64,
) -> Result<Result<ConsentEvidence, ConsentError>, ConsentError> {
    let Some(pending) = consents::pending(tx, record.id, consent).await? else {
        return Ok(Err(ConsentError::NoCode));
    };
    if pending.attempts >= max_attempts {
        return Ok(Err(ConsentError::Exhausted));
    }
    if pending.expires_at <= now {
        return Ok(Err(ConsentError::Expired));
    }
    if !code.matches(record.id, consent, &pending.code_hash) {
        let attempts = consents::count_attempt(tx, record.id, consent).await?;
        metrics::counter!("consent_code_failures_total").increment(1);
        return Ok(Err(if attempts >= max_attempts { ConsentError::Exhausted } else { ConsentError::WrongCode }));
    }
    consents::remove(tx, record.id, consent).await?;
    Ok(Ok(ConsentEvidence {
        consent: consent.as_str().to_owned(),
        method: "otp".into(),
        channel: Some(pending.channel),
        sent_to: Some(pending.sent_to),
        document_version: Some(pending.document_version),
        code_sent_at: Some(pending.sent_at),
        given_at: now,
        actor: String::new(),
    }))
}

/// Sets the consents (the first time each counts), appends their evidence, and decides a user
/// that was waiting on consents.
async fn record_consents(
    tx: &mut Tx<'_>,
    record: ProspectRecord,
    given: &[(ConsentKind, ConsentEvidence)],
    now: i64,
) -> Result<Option<CipState>, ConsentError> {
    let privacy = given.iter().any(|(c, _)| *c == ConsentKind::Privacy);
    let contract = given.iter().any(|(c, _)| *c == ConsentKind::Contract);
    let partner = PartnerId::new(record.partner_id).map_err(|_| ConsentError::NotFound)?;
    let updated = prospects::record_consents(tx, &record.public_id, partner, privacy, contract, now)
        .await?
        .ok_or(ConsentError::NotFound)?;
    for (_, evidence) in given {
        consents::record_evidence(tx, record.id, record.partner_id, evidence).await?;
    }
    let state = updated.cip_state()?;
    let waiting = state.is_some_and(|s| s.status == Status::UpgradePending && s != CipState::COMPLIANCE);
    let Some((_, evidence)) = given.first().filter(|_| waiting) else {
        return Ok(state);
    };
    let names: Vec<&str> = given.iter().map(|(c, _)| c.as_str()).collect();
    let why = format!("consents given: {} ({})", names.join(", "), evidence.method);
    Ok(decide(tx, &updated, &why, &evidence.actor, now).await?.or(state))
}

/// A code is sent only for a user in onboarding who has not given this consent yet.
fn waiting_for(record: &ProspectRecord, consent: ConsentKind) -> Result<(), ConsentError> {
    if record.cip_state()?.is_none() {
        return Err(ConsentError::NotInOnboarding);
    }
    let given = match consent {
        ConsentKind::Privacy => record.privacy_consent_at,
        ConsentKind::Contract => record.contract_consent_at,
    };
    match given {
        Some(_) => Err(ConsentError::AlreadyGiven(consent)),
        None => Ok(()),
    }
}
