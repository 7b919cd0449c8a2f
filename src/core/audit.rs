//! What staff actions the audit log records, by name. Every entry is written by the use case
//! that performs the action, in the same write (`store::audit::append`).

use crate::store::{AuditRecord, StoreResult, Tx, audit};

/// An audited action. The names are what `onboard admin audit` and the console show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    StaffTokenCreate,
    StaffTokenRevoke,
    JobRetry,
    ComplianceClear,
    ComplianceBlock,
    SanctionsScreen,
    PartnerCreate,
    ApiKeyRotate,
    SigningKeyRotate,
    SanctionsLoad,
    PartnerKycConfigure,
    SecretsRewrap,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
    WebhookEndpointDelete,
    WebhookSecretRotate,
    PlanCreate,
    PlanArchive,
    PartnerPaymentsConfigure,
    PartnerSanctionsLists,
    ConsoleSignIn,
    ConsoleSignOut,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::StaffTokenCreate => "staff_token.create",
            Action::StaffTokenRevoke => "staff_token.revoke",
            Action::JobRetry => "job.retry",
            Action::ComplianceClear => "compliance.clear",
            Action::ComplianceBlock => "compliance.block",
            Action::SanctionsScreen => "sanctions.screen",
            Action::PartnerCreate => "partner.create",
            Action::ApiKeyRotate => "partner.api_key.rotate",
            Action::SigningKeyRotate => "signing_key.rotate",
            Action::SanctionsLoad => "sanctions.load",
            Action::PartnerKycConfigure => "partner.kyc.configure",
            Action::SecretsRewrap => "secrets.rewrap",
            Action::WebhookEndpointCreate => "webhook_endpoint.create",
            Action::WebhookEndpointUpdate => "webhook_endpoint.update",
            Action::WebhookEndpointDelete => "webhook_endpoint.delete",
            Action::WebhookSecretRotate => "webhook_endpoint.rotate_secret",
            Action::PlanCreate => "plan.create",
            Action::PlanArchive => "plan.archive",
            Action::PartnerPaymentsConfigure => "partner.payments.configure",
            Action::PartnerSanctionsLists => "partner.sanctions_lists.set",
            Action::ConsoleSignIn => "console.sign_in",
            Action::ConsoleSignOut => "console.sign_out",
        }
    }
}

/// Appends `actor`'s `action` on `target` to the audit log, in the open write.
pub(crate) async fn record(
    tx: &mut Tx<'_>,
    actor: &str,
    action: Action,
    target: Option<&str>,
    detail: serde_json::Value,
    now: i64,
) -> StoreResult<()> {
    let entry = AuditRecord {
        actor: actor.to_owned(),
        action: action.as_str(),
        target: target.map(str::to_owned),
        detail,
        at: now,
    };
    audit::append(tx, &entry).await
}
