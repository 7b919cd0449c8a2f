//! Identity verification with a KYC provider (seed 003 step 3, DESIGN.md §3): the SDK access
//! token a user's app needs, inbound provider webhooks, the reconciliation that polls an
//! applicant whose webhook is overdue, and the sandbox's simulated provider. Provider calls
//! happen here, outside any transaction; what they answer is written by `core::kyc`.

pub mod sumsub;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::kyc::{self as core_kyc, Effect, Received, secret_aad};
use crate::core::onboarding::MoveError;
use crate::domain::kyc::{EventKind, KycEvent, ProviderKind};
use crate::domain::{PartnerId, now_ms};
use crate::jobs::{JobOutcome, JobRegistry, JobWaker};
use crate::kek::Kek;
use crate::store::kyc::{ApplicantRecord, PartnerKycRecord};
use crate::store::{ClaimedJob, NewJob, ProspectRecord, Store, StoreError};
use sumsub::{DigestAlg, SumsubClient};

/// The job that polls an applicant whose review has not arrived.
pub const RECONCILE_JOB: &str = "kyc.reconcile";
/// The sandbox's simulated review, delivered as a signed webhook.
pub const SANDBOX_REVIEW_JOB: &str = "kyc.sandbox_review";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KycSettings {
    /// Sumsub's API (tests point it at a local server).
    pub sumsub_base_url: String,
    /// Lifetime of SDK access tokens.
    pub access_token_ttl_secs: u64,
    /// The level sandbox partners without settings verify at.
    pub sandbox_level_name: String,
    /// How long after the applicant is created (and between later rounds, doubling) the
    /// provider is asked for a review whose webhook has not come.
    pub reconcile_after_secs: u64,
    /// Rounds of reconciliation before the applicant is left to its webhook.
    pub reconcile_rounds: u32,
    /// How long the sandbox's simulated review takes.
    pub sandbox_review_delay_ms: u64,
    /// Timeout of each provider call.
    pub timeout_secs: u64,
}

impl Default for KycSettings {
    fn default() -> Self {
        Self {
            sumsub_base_url: "https://api.sumsub.com".into(),
            access_token_ttl_secs: 600,
            sandbox_level_name: "basic-kyc-level".into(),
            reconcile_after_secs: 1800,
            reconcile_rounds: 8,
            sandbox_review_delay_ms: 2_000,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KycError {
    #[error("KYC is not configured for this partner")]
    NotConfigured,
    #[error("the user has not submitted a profile yet (PUT /me/profile)")]
    ProfileFirst,
    #[error("this user's onboarding does not include identity verification")]
    NotRequired,
    #[error("the webhook's digest does not verify")]
    Unauthenticated,
    #[error("the KYC provider failed: {0}")]
    Provider(String),
    #[error("stored secrets do not open: {0}")]
    Sealed(#[from] crate::kek::KekError),
    #[error(transparent)]
    Move(#[from] MoveError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The provider a partner's settings name.
pub enum Provider {
    Sumsub(SumsubClient),
    /// Simulated: applicants and tokens are made up, reviews follow the sandbox triggers.
    Sandbox,
}

/// What `POST /kyc/access-token` answers.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token: String,
    pub level_name: String,
    pub expires_in: u64,
}

/// The payload of the KYC jobs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    user_id: i64,
    #[serde(default)]
    round: u32,
    #[serde(default)]
    since: i64,
}

/// A webhook as it arrived.
pub struct Inbound<'a> {
    pub body: &'a [u8],
    /// `X-Payload-Digest-Alg`.
    pub alg: Option<&'a str>,
    /// `X-Payload-Digest`.
    pub digest: Option<&'a str>,
    /// The partner the webhook URL names (`?partnerId=`), when it does.
    pub partner: Option<PartnerId>,
    pub source: &'static str,
    /// The job delivering it (the sandbox's), completed in the same write.
    pub job: Option<ClaimedJob>,
}

/// The KYC service of this node.
#[derive(Clone)]
pub struct Kyc(Arc<Inner>);

struct Inner {
    store: Store,
    kek: Arc<Kek>,
    settings: KycSettings,
    http: reqwest::Client,
    waker: JobWaker,
}

impl Kyc {
    pub fn new(store: Store, kek: Arc<Kek>, settings: KycSettings, waker: JobWaker) -> Result<Self, KycError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KycError::Provider(e.to_string()))?;
        Ok(Self(Arc::new(Inner { store, kek, settings, http, waker })))
    }

    pub fn kek(&self) -> &Kek {
        &self.0.kek
    }

    /// The partner's settings; a sandbox partner without any gets the simulated provider.
    async fn settings_for(&self, partner: PartnerId, sandbox: bool) -> Result<PartnerKycRecord, KycError> {
        match self.0.store.partner_kyc(partner).await? {
            Some(record) => Ok(record),
            None if sandbox => {
                let level = &self.0.settings.sandbox_level_name;
                Ok(core_kyc::sandbox_defaults(&self.0.store, &self.0.kek, partner, level, now_ms()).await?)
            }
            None => Err(KycError::NotConfigured),
        }
    }

    /// The partner's webhook secret, opened; `None` when it has no KYC settings.
    async fn webhook_secret(&self, partner: PartnerId) -> Result<Option<SecretString>, KycError> {
        let Some(settings) = self.0.store.partner_kyc(partner).await? else { return Ok(None) };
        Ok(Some(self.0.kek.open_string(&secret_aad("webhook_secret", partner.get()), &settings.webhook_secret)?))
    }

    fn provider(&self, record: &PartnerKycRecord) -> Result<Provider, KycError> {
        match ProviderKind::parse(&record.provider) {
            Some(ProviderKind::Sandbox) => Ok(Provider::Sandbox),
            Some(ProviderKind::Sumsub) => {
                let open = |column: &str, sealed: &Option<Vec<u8>>| -> Result<SecretString, KycError> {
                    let sealed = sealed.as_deref().ok_or(KycError::NotConfigured)?;
                    Ok(self.0.kek.open_string(&secret_aad(column, record.partner_id), sealed)?)
                };
                let app_token = open("app_token", &record.app_token)?;
                let secret_key = open("secret_key", &record.secret_key)?;
                Ok(Provider::Sumsub(SumsubClient::new(
                    self.0.http.clone(),
                    &self.0.settings.sumsub_base_url,
                    app_token,
                    secret_key,
                )))
            }
            None => Err(KycError::Store(StoreError::Corrupt(format!("partner {}: KYC provider", record.partner_id)))),
        }
    }

    /// An SDK access token for a user in CIP whose onboarding includes KYC; the applicant is
    /// created at the provider on first use (external user id = our `usr:` id, nothing else).
    pub async fn access_token(&self, record: &ProspectRecord, sandbox: bool) -> Result<AccessToken, KycError> {
        if record.cip_state()?.is_none() {
            return Err(KycError::ProfileFirst);
        }
        if !record.kyc_required {
            return Err(KycError::NotRequired);
        }
        let partner = PartnerId::new(record.partner_id).map_err(|_| KycError::NotConfigured)?;
        let settings = self.settings_for(partner, sandbox).await?;
        let provider = self.provider(&settings)?;
        let now = now_ms();
        let applicant = match self.0.store.kyc_applicant(record.id).await? {
            Some(applicant) => {
                if matches!(provider, Provider::Sandbox) && applicant.reject_type.as_deref() == Some("RETRY") {
                    // The simulated user resubmits with every new token after a RETRY.
                    let job = self.sandbox_review(record, partner, applicant.last_event_ms, now);
                    core_kyc::enqueue(&self.0.store, vec![job], now).await?;
                    self.0.waker.wake_kind(SANDBOX_REVIEW_JOB);
                }
                applicant
            }
            None => {
                let applicant_id = match &provider {
                    Provider::Sumsub(client) => {
                        client.create_applicant(&record.public_id, &settings.level_name).await?
                    }
                    Provider::Sandbox => format!("sbx{}", uuid::Uuid::now_v7().simple()),
                };
                let mut follow_ups = vec![self.reconcile_job(record.id, partner, 0, 0, now)];
                if matches!(provider, Provider::Sandbox) {
                    follow_ups.push(self.sandbox_review(record, partner, 0, now));
                }
                let level = settings.level_name.clone();
                let stored =
                    core_kyc::open_applicant(&self.0.store, record.id, partner, applicant_id, level, follow_ups, now)
                        .await?;
                self.0.waker.wake_kind(SANDBOX_REVIEW_JOB);
                stored
            }
        };
        let ttl = self.0.settings.access_token_ttl_secs;
        let token = match &provider {
            Provider::Sumsub(client) => client.access_token(&record.public_id, &applicant.level_name, ttl).await?,
            Provider::Sandbox => format!("_act-sandbox-{}", crate::auth::credentials::random_token(24)),
        };
        Ok(AccessToken { token, level_name: applicant.level_name, expires_in: ttl })
    }

    /// Round `round` of polling the user's applicant, for the review awaited since `since` (0:
    /// the first; else the `createdAtMs` of the resubmission or reset that restarted the wait).
    fn reconcile_job(&self, user: i64, partner: PartnerId, round: u32, since: i64, now: i64) -> NewJob {
        let base = self.0.settings.reconcile_after_secs.saturating_mul(1000);
        let delay = base.saturating_mul(1u64 << round.min(16)).min(86_400_000);
        let payload = serde_json::json!({ "userId": user, "round": round, "since": since });
        let mut job =
            NewJob::new(RECONCILE_JOB, payload, now).dedupe(format!("{RECONCILE_JOB}:{user}:{since}:{round}"));
        job.partner = Some(partner);
        job.run_at = now.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX));
        job
    }

    fn sandbox_review(&self, record: &ProspectRecord, partner: PartnerId, after: i64, now: i64) -> NewJob {
        let mut job = NewJob::new(SANDBOX_REVIEW_JOB, serde_json::json!({ "userId": record.id }), now)
            .dedupe(format!("{SANDBOX_REVIEW_JOB}:{}:{after}", record.id));
        job.partner = Some(partner);
        job.run_at = now.saturating_add(i64::try_from(self.0.settings.sandbox_review_delay_ms).unwrap_or(0));
        job
    }

    /// An inbound webhook: authenticated by its digest with the webhook secret of the partner
    /// (`partner`, from the webhook URL's `partnerId`, or else the partner of the user the body
    /// names), then applied. Nothing is written unless the digest verifies; an authenticated
    /// body Onboard cannot use is stored and acknowledged, so the provider does not retry it.
    pub async fn receive(&self, inbound: Inbound<'_>) -> Result<Effect, KycError> {
        let Inbound { body, alg, digest, partner, source, job } = inbound;
        let alg = DigestAlg::parse(alg).ok_or(KycError::Unauthenticated)?;
        let digest = digest.ok_or(KycError::Unauthenticated)?;
        let parsed = sumsub::parse_webhook(body).ok();
        // The user the body names, with its partner (nothing else of the body is trusted yet).
        let subject = match &parsed {
            Some(event) => self.0.store.kyc_subject(&event.external_user_id).await?,
            None => None,
        };
        // Whose secret verifies it: the partner the URL names, else the named user's.
        let partner = match (partner, subject) {
            (Some(partner), _) => partner,
            (None, Some((_, of))) => PartnerId::new(of).map_err(|_| KycError::Unauthenticated)?,
            (None, None) => return Err(KycError::Unauthenticated),
        };
        let secret = self.webhook_secret(partner).await?.ok_or(KycError::Unauthenticated)?;
        if !sumsub::verify_digest(secret.expose_secret(), alg, body, digest) {
            return Err(KycError::Unauthenticated);
        }
        // Authenticated from here on. The user must be this partner's.
        let user = subject.filter(|(_, of)| *of == partner.get()).map(|(user, _)| user);
        let event = parsed.unwrap_or_else(|| KycEvent {
            type_name: "unreadable".into(),
            kind: None,
            applicant_id: None,
            external_user_id: String::new(),
            level_name: None,
            created_at_ms: 0,
            review_status: None,
            review: None,
        });
        let follow_ups = match (user, event.kind) {
            // The wait for a review starts (applicant created) or starts again (documents
            // resubmitted, applicant reset, a hold): poll for it in case its webhook is lost.
            (Some(user), Some(EventKind::Created)) => vec![self.reconcile_job(user, partner, 0, 0, now_ms())],
            (Some(user), Some(EventKind::Pending | EventKind::Reset | EventKind::OnHold)) => {
                vec![self.reconcile_job(user, partner, 0, event.created_at_ms, now_ms())]
            }
            _ => Vec::new(),
        };
        let received = Received {
            partner: partner.get(),
            user,
            event,
            follow_ups,
            job,
            source,
            raw_body: String::from_utf8_lossy(body).into_owned(),
            body_sha256: Sha256::digest(body).to_vec(),
            digest_alg: alg.as_str().to_owned(),
        };
        self.apply(received).await
    }

    async fn apply(&self, received: Received) -> Result<Effect, KycError> {
        let source = received.source;
        let effect = core_kyc::apply_event(&self.0.store, received, now_ms()).await?;
        metrics::counter!("kyc_events_total", "source" => source, "effect" => effect.label()).increment(1);
        if let Effect::Moved(to) = effect {
            if to == crate::domain::cip::CipState::PROVISIONING {
                self.0.waker.wake_kind(crate::core::onboarding::PROVISION_JOB);
            }
            if to == crate::domain::cip::CipState::ACCEPTED {
                self.0.waker.wake();
            }
        }
        Ok(effect)
    }

    /// Registers the reconciliation and the sandbox's simulated reviews.
    pub fn register_jobs(&self, registry: &mut JobRegistry, concurrency: usize) {
        let kyc = self.clone();
        registry.register(RECONCILE_JOB, concurrency, move |job| {
            let kyc = kyc.clone();
            async move { kyc.reconcile(job).await }
        });
        let kyc = self.clone();
        registry.register(SANDBOX_REVIEW_JOB, concurrency, move |job| {
            let kyc = kyc.clone();
            async move { kyc.simulate_review(job).await }
        });
    }

    async fn job_subject(
        &self,
        job: &ClaimedJob,
    ) -> Result<(ProspectRecord, ApplicantRecord, PartnerId, Payload), JobOutcome> {
        let payload: Payload =
            serde_json::from_str(&job.payload).map_err(|e| JobOutcome::Fail(format!("bad payload: {e}")))?;
        let partner = job.partner_id.ok_or_else(|| JobOutcome::Fail("job has no partner".into()))?;
        let partner_id = PartnerId::new(partner).map_err(|_| JobOutcome::Fail("bad partner".into()))?;
        let record = match self.0.store.prospect_for_job(payload.user_id, partner).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(JobOutcome::Fail(format!("user {} not found", payload.user_id))),
            Err(e) => return Err(JobOutcome::Retry(e.to_string())),
        };
        let applicant = match self.0.store.kyc_applicant(record.id).await {
            Ok(Some(applicant)) => applicant,
            Ok(None) => return Err(JobOutcome::Done),
            Err(e) => return Err(JobOutcome::Retry(e.to_string())),
        };
        Ok((record, applicant, partner_id, payload))
    }

    /// Asks the provider for a review whose webhook is overdue; applies it when there is one,
    /// else schedules the next round.
    async fn reconcile(&self, job: ClaimedJob) -> JobOutcome {
        let (record, applicant, partner, Payload { round, since, .. }) = match self.job_subject(&job).await {
            Ok(subject) => subject,
            Err(outcome) => return outcome,
        };
        if applicant.review_status.as_deref() == Some("completed") {
            return JobOutcome::Done;
        }
        let settings = match self.settings_for(partner, false).await {
            Ok(settings) => settings,
            // The database may be back in a moment; missing settings will not.
            Err(KycError::Store(e)) => return JobOutcome::Retry(e.to_string()),
            Err(e) => return JobOutcome::Fail(e.to_string()),
        };
        let (now, after) = (now_ms(), applicant.last_event_ms);
        let reading = match self.provider(&settings) {
            Ok(Provider::Sumsub(client)) => {
                client.applicant_status(&applicant.applicant_id, &record.public_id, now).await
            }
            Ok(Provider::Sandbox) => {
                let body = simulated_review(&record, &applicant, now);
                let event = sumsub::parse_webhook(body.to_string().as_bytes()).ok();
                Ok((body, event))
            }
            Err(e) => Err(e),
        };
        let (answer, event) = match reading {
            Ok(reading) => reading,
            Err(e) => return JobOutcome::Retry(e.to_string()),
        };
        let next = (round + 1 < self.0.settings.reconcile_rounds)
            .then(|| self.reconcile_job(record.id, partner, round + 1, since, now));
        // No review yet, or the hold already known: ask again later.
        let known_hold = applicant.review_status.as_deref() == Some("onHold");
        let event = match event {
            Some(event) if event.created_at_ms > after && !(known_hold && event.kind == Some(EventKind::OnHold)) => {
                event
            }
            _ => {
                return match core_kyc::reschedule(&self.0.store, job, next, now).await {
                    Ok(_) => JobOutcome::Committed,
                    Err(e) => JobOutcome::Retry(e.to_string()),
                };
            }
        };
        // Stored with whose status it is and when it was read: status answers of two applicants
        // (or of one, read twice) may be byte-for-byte equal, and each reading is its own record.
        let raw = serde_json::json!({
            "applicantId": applicant.applicant_id,
            "externalUserId": record.public_id,
            "readAtMs": now,
            "status": answer,
        })
        .to_string();
        // A hold is not the end: its decision may be lost too.
        let follow_ups = if event.kind == Some(EventKind::OnHold) { next.into_iter().collect() } else { Vec::new() };
        let received = Received {
            partner: partner.get(),
            user: Some(record.id),
            event,
            follow_ups,
            job: Some(job),
            source: "reconciliation",
            body_sha256: Sha256::digest(raw.as_bytes()).to_vec(),
            raw_body: raw,
            digest_alg: "api".into(),
        };
        match self.apply(received).await {
            Ok(_) => JobOutcome::Committed,
            Err(e) => JobOutcome::Retry(e.to_string()),
        }
    }

    /// The sandbox provider reviews: a webhook shaped and signed as Sumsub's, through `receive`.
    async fn simulate_review(&self, job: ClaimedJob) -> JobOutcome {
        let (record, applicant, partner, _) = match self.job_subject(&job).await {
            Ok(subject) => subject,
            Err(outcome) => return outcome,
        };
        let secret = match self.webhook_secret(partner).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return JobOutcome::Fail("the partner has no KYC settings".into()),
            Err(KycError::Store(e)) => return JobOutcome::Retry(e.to_string()),
            Err(e) => return JobOutcome::Fail(e.to_string()),
        };
        let body = simulated_review(&record, &applicant, now_ms());
        let body = body.to_string();
        let digest = sumsub::payload_digest(secret.expose_secret(), DigestAlg::Sha256, body.as_bytes());
        let inbound = Inbound {
            body: body.as_bytes(),
            alg: Some(DigestAlg::Sha256.as_str()),
            digest: Some(&digest),
            partner: Some(partner),
            source: "sandbox",
            job: Some(job),
        };
        match self.receive(inbound).await {
            Ok(_) => JobOutcome::Committed,
            Err(e) => JobOutcome::Retry(e.to_string()),
        }
    }
}

/// The sandbox triggers (README, "Sandbox triggers"): last name `Retry` → RED/RETRY with an
/// unreadable-document label, `Reject` → RED/FINAL, `Hold` → on hold, anything else GREEN. The
/// webhook body Sumsub would send.
pub fn simulated_review(record: &ProspectRecord, applicant: &ApplicantRecord, now: i64) -> serde_json::Value {
    let last_name = record.last_name.as_deref().unwrap_or_default();
    let created = sumsub::created_at_text(now);
    let mut body = serde_json::json!({
        "applicantId": applicant.applicant_id,
        "inspectionId": applicant.applicant_id,
        "correlationId": format!("sandbox-{}", uuid::Uuid::now_v7().simple()),
        "externalUserId": record.public_id,
        "levelName": applicant.level_name,
        "type": "applicantReviewed",
        "reviewStatus": "completed",
        "createdAtMs": created,
        "sandboxMode": true,
    });
    let result = match last_name.trim().to_lowercase().as_str() {
        "retry" => serde_json::json!({"reviewAnswer": "RED", "reviewRejectType": "RETRY",
            "rejectLabels": ["UNSATISFACTORY_PHOTOS"], "moderationComment": "The document photo is not readable."}),
        "reject" => {
            serde_json::json!({"reviewAnswer": "RED", "reviewRejectType": "FINAL", "rejectLabels": ["FORGERY"]})
        }
        "hold" => {
            body["type"] = "applicantOnHold".into();
            body["reviewStatus"] = "onHold".into();
            return body;
        }
        _ => serde_json::json!({"reviewAnswer": "GREEN"}),
    };
    body["reviewResult"] = result;
    body
}
