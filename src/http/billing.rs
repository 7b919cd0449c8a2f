//! Seed 003 step 4 for the signed-in user: accounts (`/accounts`), the partner's subscription
//! tiers (`GET /subscriptions/info`), subscriptions (`/subscriptions`), and invoices with their
//! payment (`/payments/invoices/{invoiceId}`, `…/pay`); and for operators, a partner's tiers
//! (`/admin/partners/{partnerId}/plans`) and payment provider (`/admin/partners/{partnerId}/payments`).
//! Every end-user route checks its scope (RFC 6750 §3.1).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin::StaffAuth;
use super::error::responses::UnsupportedMediaType;
use super::error::{ApiError, problem_response};
use super::extract::{ApiJson, ApiPath, EndUserAuth};
use super::trace::TraceContext;
use crate::auth::staff::StaffRole;
use crate::core::billing::{
    self, Account, BillingError, Invoice, NewTier, Paid, Payer, PaymentsConfig, Subscription, Tier,
};
use crate::domain::billing::{AccountId, Interval, InvoiceId, PlanId, SubscriptionId};
use crate::domain::money::{Currency, Money};
use crate::domain::{Partner, PartnerId, now_ms};
use crate::payments::ProviderError;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, open_account))
        .routes(routes!(show_account))
        .routes(routes!(tiers))
        .routes(routes!(list_subscriptions, start_subscription))
        .routes(routes!(cancel_subscription))
        .routes(routes!(get_invoice))
        .routes(routes!(pay_invoice))
        .routes(routes!(admin_plans, admin_create_plan))
        .routes(routes!(admin_archive_plan))
        .routes(routes!(admin_payments))
        .routes(routes!(stripe_webhook))
}

const INVALID: &str = "The request has invalid fields.";

impl From<BillingError> for ApiError {
    fn from(err: BillingError) -> Self {
        match err {
            BillingError::NotFound(what) => ApiError::NotFound(format!("No such {what} for this user.")),
            BillingError::NotCompleted(_) | BillingError::Conflict(_) | BillingError::NotConfigured => {
                ApiError::Conflict(sentence(&err.to_string()))
            }
            BillingError::InFlight => {
                ApiError::Conflict("Another payment of this invoice is under way; retry shortly.".into())
            }
            BillingError::Invalid(message) => ApiError::invalid_field(INVALID, "body", sentence(&message)),
            BillingError::Provider(e) => {
                tracing::warn!(error = %e, "payment provider call failed");
                let detail = match e {
                    ProviderError::Unavailable(_) => {
                        "The payment provider did not answer; nothing was recorded as paid. Retry the payment: the same \
                         attempt is finished, never charged twice."
                    }
                    ProviderError::Rejected(_) => {
                        "The payment provider refused the request (the partner's payment settings may be wrong); \
                         nothing was charged."
                    }
                };
                ApiError::BadGateway(detail.into())
            }
            BillingError::Sealed(e) => ApiError::Internal(e.into()),
            BillingError::Duplicate => ApiError::Conflict("This event was applied before.".into()),
            BillingError::Store(e) => e.into(),
        }
    }
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// A path id of the right kind, else 404 (an id that cannot exist is not found, like any other).
fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(format!("No such {what} for this user.")))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountList {
    data: Vec<Account>,
}

/// The user's accounts (the first is opened when onboarding completes).
#[utoipa::path(get, path = "/accounts", tag = "Seed 003: accounts and subscriptions",
    responses((status = 200, body = AccountList),
        (status = 403, description = "The token lacks `accounts:read`", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn list_accounts(State(state): State<AppState>, auth: EndUserAuth) -> Result<Json<AccountList>, ApiError> {
    auth.require("accounts:read")?;
    Ok(Json(AccountList { data: billing::accounts(&state.store, auth.partner, &auth.user).await? }))
}

/// Opens another account; only for users whose onboarding is `Completed` (409 names the status).
#[utoipa::path(post, path = "/accounts", tag = "Seed 003: accounts and subscriptions",
    responses((status = 201, body = Account),
        (status = 403, description = "The token lacks `accounts:create`", body = super::error::Problem),
        (status = 409, description = "The user's onboarding is not Completed", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn open_account(
    State(state): State<AppState>,
    auth: EndUserAuth,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    auth.require("accounts:create")?;
    let account = billing::open_account(&state.store, auth.partner, &auth.user, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[utoipa::path(get, path = "/accounts/{accountId}", tag = "Seed 003: accounts and subscriptions",
    params(("accountId" = String, Path, description = "`acc:<uuid>`")),
    responses((status = 200, body = Account),
        (status = 403, description = "The token lacks `accounts:show`", body = super::error::Problem),
        (status = 404, description = "No such account of this user", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn show_account(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiPath(account_id): ApiPath<String>,
) -> Result<Json<Account>, ApiError> {
    auth.require("accounts:show")?;
    let id: AccountId = path_id(&account_id, "account")?;
    Ok(Json(billing::account(&state.store, auth.partner, &auth.user, id.as_str()).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierList {
    data: Vec<Tier>,
}

/// "Get Subscriptions Info": the partner's subscription tiers on offer.
#[utoipa::path(get, path = "/subscriptions/info", tag = "Seed 003: accounts and subscriptions",
    responses((status = 200, body = TierList),
        (status = 403, description = "The token lacks `subscriptions:read`", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn tiers(State(state): State<AppState>, auth: EndUserAuth) -> Result<Json<TierList>, ApiError> {
    auth.require("subscriptions:read")?;
    Ok(Json(TierList { data: billing::tiers(&state.store, auth.partner, false).await? }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSubscription {
    /// One of the user's accounts (`acc:<uuid>`).
    account_id: String,
    /// A tier from `GET /subscriptions/info` (`plan:<uuid>`).
    subscription_details_id: String,
}

/// "Start Subscription": the account subscribes to the tier. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/subscriptions", tag = "Seed 003: accounts and subscriptions",
    request_body = StartSubscription,
    responses((status = 201, body = Subscription, description = "`incomplete` with the first `invoiceId` to pay, or `trialing`"),
        (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 403, description = "The token lacks `subscriptions:create`", body = super::error::Problem),
        (status = 404, description = "No such account of this user, or no such tier", body = super::error::Problem),
        (status = 409, description = "A live subscription of the account to the tier exists, or the tier is archived", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn start_subscription(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiJson(request): ApiJson<StartSubscription>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    auth.require("subscriptions:create")?;
    let account: AccountId = request
        .account_id
        .parse()
        .map_err(|e: crate::domain::billing::InvalidId| ApiError::invalid_field(INVALID, "accountId", e.to_string()))?;
    let tier: PlanId = request.subscription_details_id.parse().map_err(|e: crate::domain::billing::InvalidId| {
        ApiError::invalid_field(INVALID, "subscriptionDetailsId", e.to_string())
    })?;
    let subscription =
        billing::start_subscription(&state.store, auth.partner, &auth.user, account.as_str(), tier.as_str(), now_ms())
            .await?;
    Ok((StatusCode::CREATED, Json(subscription)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    data: Vec<Subscription>,
}

#[utoipa::path(get, path = "/subscriptions", tag = "Seed 003: accounts and subscriptions",
    responses((status = 200, body = SubscriptionList),
        (status = 403, description = "The token lacks `subscriptions:read`", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    auth: EndUserAuth,
) -> Result<Json<SubscriptionList>, ApiError> {
    auth.require("subscriptions:read")?;
    Ok(Json(SubscriptionList { data: billing::subscriptions(&state.store, auth.partner, &auth.user).await? }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct CancelSubscription {
    /// `true` (the default): it ends with the current period, which stays paid for. `false`: it
    /// ends now, an unpaid invoice is voided, and a paid period is not refunded.
    at_period_end: Option<bool>,
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/cancel", tag = "Seed 003: accounts and subscriptions",
    params(("subscriptionId" = String, Path, description = "`sub:<uuid>`")),
    request_body(content = CancelSubscription, description = "Optional"),
    responses((status = 200, body = Subscription),
        (status = 403, description = "The token lacks `subscriptions:create`", body = super::error::Problem),
        (status = 404, description = "No such subscription of this user", body = super::error::Problem),
        (status = 409, description = "Already canceled", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn cancel_subscription(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiPath(subscription_id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<Subscription>, ApiError> {
    auth.require("subscriptions:create")?;
    let id: SubscriptionId = path_id(&subscription_id, "subscription")?;
    let request: CancelSubscription = if body.iter().all(u8::is_ascii_whitespace) {
        CancelSubscription::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedBody(format!("The body is not valid: {e}.")))?
    };
    let at_period_end = request.at_period_end.unwrap_or(true);
    let subscription =
        billing::cancel_subscription(&state.store, auth.partner, &auth.user, id.as_str(), at_period_end, now_ms())
            .await?;
    Ok(Json(subscription))
}

/// "Payment Get or Create": an invoice of the user (`inv:…`), or, given a subscription
/// (`sub:…`), the invoice of its current period, created when the period is due and has none yet.
#[utoipa::path(get, path = "/payments/invoices/{invoiceId}", tag = "Seed 003: accounts and subscriptions",
    params(("invoiceId" = String, Path, description = "`inv:<uuid>`, or `sub:<uuid>` for the subscription's current invoice")),
    responses((status = 200, body = Invoice),
        (status = 403, description = "The token lacks `subscriptions:read`", body = super::error::Problem),
        (status = 404, description = "No such invoice of this user", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn get_invoice(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiPath(invoice_id): ApiPath<String>,
) -> Result<Json<Invoice>, ApiError> {
    auth.require("subscriptions:read")?;
    let id = if invoice_id.starts_with(SubscriptionId::PREFIX) {
        path_id::<SubscriptionId>(&invoice_id, "subscription")?.to_string()
    } else {
        path_id::<InvoiceId>(&invoice_id, "invoice")?.to_string()
    };
    Ok(Json(billing::invoice(&state.store, auth.partner, &auth.user, &id, now_ms()).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"paymentMethodId": "pm_card_visa"}))]
pub struct PayInvoice {
    /// A PaymentMethod the partner's app created with the provider's SDK (`pm_…`); card data
    /// never reaches Onboard. Sandbox: Stripe's test ids (`pm_card_visa`, …).
    payment_method_id: String,
}

/// A declined payment: RFC 9457 with the provider's codes and the invoice as it stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    trace_id: String,
    /// The provider's code (`card_declined`, `expired_card`, …).
    code: Option<String>,
    /// Why the bank declined (`insufficient_funds`, `generic_decline`, …).
    decline_code: Option<String>,
    invoice: Invoice,
}

/// A payment waiting on the customer (3-D Secure) or the bank.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPending {
    /// `requires_action` (finish it in the provider's SDK with `clientSecret`) or `processing`.
    status: String,
    client_secret: Option<String>,
    /// The provider's payment (a PaymentIntent id); its webhook settles the invoice.
    provider_reference: String,
    invoice: Invoice,
}

/// "Pay Invoice": charges the method once. Paying a paid invoice answers its payment; racing
/// payers make one charge. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/payments/invoices/{invoiceId}/pay", tag = "Seed 003: accounts and subscriptions",
    params(("invoiceId" = String, Path, description = "`inv:<uuid>`")),
    request_body = PayInvoice,
    responses((status = 200, body = Invoice, description = "Paid (now or before)"),
        (status = 202, body = PaymentPending, description = "Waiting on the customer or the bank; a webhook settles it"),
        (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 402, body = PaymentDeclined, description = "Declined: the invoice stays open; pay again with another method"),
        (status = 403, description = "The token lacks `subscriptions:create`", body = super::error::Problem),
        (status = 404, description = "No such invoice of this user", body = super::error::Problem),
        (status = 409, description = "The invoice is void, or another payment of it is in progress", body = super::error::Problem),
        (status = 502, description = "The payment provider failed; nothing was recorded as paid", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn pay_invoice(
    State(state): State<AppState>,
    auth: EndUserAuth,
    ApiPath(invoice_id): ApiPath<String>,
    ApiJson(request): ApiJson<PayInvoice>,
) -> Result<Response, ApiError> {
    auth.require("subscriptions:create")?;
    let id: InvoiceId = path_id(&invoice_id, "invoice")?;
    let method = payment_method(&request.payment_method_id)?;
    let partner = partner_of(&state, auth.partner).await?;
    let provider = billing::provider_of(&state.store, &state.payments, &partner).await?;
    let payer = Payer { provider: &provider, lease_ms: state.payments.lease_ms() };
    let paid =
        billing::pay_invoice(&state.store, &payer, auth.partner, &auth.user, id.as_str(), method, now_ms()).await?;
    Ok(match paid {
        Paid::Paid(invoice) => Json(invoice).into_response(),
        Paid::Pending { invoice, client_secret, status, reference } => {
            let pending = PaymentPending { status, client_secret, provider_reference: reference, invoice };
            (StatusCode::ACCEPTED, Json(pending)).into_response()
        }
        Paid::Declined(invoice) => problem_response(StatusCode::PAYMENT_REQUIRED, &PaymentDeclined::of(invoice)),
    })
}

/// A PaymentMethod id as the provider's SDK makes them (`pm_` and letters, digits, underscores).
fn payment_method(raw: &str) -> Result<&str, ApiError> {
    let method = raw.trim();
    let well_formed = method.starts_with("pm_")
        && method.len() <= 255
        && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if well_formed {
        Ok(method)
    } else {
        Err(ApiError::invalid_field(INVALID, "paymentMethodId", "must be a PaymentMethod id (pm_…)"))
    }
}

impl PaymentDeclined {
    /// The problem for a declined payment: the provider's codes from the invoice's last failure.
    fn of(invoice: Invoice) -> Self {
        let last = invoice.payments.iter().rev().find(|p| p.status == "failed");
        Self {
            problem_type: "urn:onboard:problem:payment-declined",
            title: "Payment Required",
            status: 402,
            detail: last.and_then(|p| p.failure_message.clone()).unwrap_or_else(|| "The payment was declined.".into()),
            trace_id: TraceContext::current().trace_id_field(),
            code: last.and_then(|p| p.failure_code.clone()),
            decline_code: last.and_then(|p| p.decline_code.clone()),
            invoice,
        }
    }
}

async fn partner_of(state: &AppState, id: PartnerId) -> Result<Partner, ApiError> {
    let gone = || ApiError::NotFound("No partner has this id.".into());
    state.store.find_partner(id).await?.ok_or_else(gone)
}

// ---------------------------------------------------------------------------------------------
// Operators

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreatePlan {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    description: Option<String>,
    /// Minor units of `currency` (999 with USD is $9.99).
    amount: i64,
    /// ISO 4217 (`USD`, `MXN`, `JPY`, `KWD`…).
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
    #[schema(pattern = "^(month|year)$")]
    interval: String,
    #[serde(default)]
    trial_days: u32,
}

/// A new subscription tier for the partner. Operator role; audited.
#[utoipa::path(post, path = "/admin/partners/{partnerId}/plans", tag = "Staff",
    params(("partnerId" = i64, Path)),
    request_body = CreatePlan,
    responses((status = 201, body = Tier), (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 404, description = "No such partner", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn admin_create_plan(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(partner_id): ApiPath<i64>,
    ApiJson(request): ApiJson<CreatePlan>,
) -> Result<(StatusCode, Json<Tier>), ApiError> {
    let staff = staff.require(StaffRole::Operator)?;
    let partner = PartnerId::new(partner_id).map_err(|_| ApiError::NotFound("No partner has this id.".into()))?;
    let tier = parse_tier(request)?;
    let created = billing::create_tier(&state.store, partner, tier, &staff.actor(), now_ms()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

fn parse_tier(request: CreatePlan) -> Result<NewTier, ApiError> {
    let currency =
        Currency::parse(&request.currency).map_err(|e| ApiError::invalid_field(INVALID, "currency", e.to_string()))?;
    let price =
        Money::new(request.amount, currency).map_err(|e| ApiError::invalid_field(INVALID, "amount", e.to_string()))?;
    let interval = Interval::parse(&request.interval)
        .ok_or_else(|| ApiError::invalid_field(INVALID, "interval", format!("must be one of {}", Interval::NAMES)))?;
    Ok(NewTier {
        name: request.name,
        description: request.description,
        price,
        interval,
        trial_days: request.trial_days,
    })
}

/// The partner's tiers, archived ones included. Operator role.
#[utoipa::path(get, path = "/admin/partners/{partnerId}/plans", tag = "Staff",
    params(("partnerId" = i64, Path)),
    responses((status = 200, body = TierList)),
    security(("bearer" = [])))]
pub async fn admin_plans(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(partner_id): ApiPath<i64>,
) -> Result<Json<TierList>, ApiError> {
    staff.require(StaffRole::Operator)?;
    let partner = PartnerId::new(partner_id).map_err(|_| ApiError::NotFound("No partner has this id.".into()))?;
    Ok(Json(TierList { data: billing::tiers(&state.store, partner, true).await? }))
}

/// Stops offering a tier; its subscriptions go on. Operator role; audited.
#[utoipa::path(post, path = "/admin/partners/{partnerId}/plans/{planId}/archive", tag = "Staff",
    params(("partnerId" = i64, Path), ("planId" = String, Path, description = "`plan:<uuid>`")),
    responses((status = 200, body = Tier), (status = 404, description = "No such tier", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn admin_archive_plan(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath((partner_id, plan_id)): ApiPath<(i64, String)>,
) -> Result<Json<Tier>, ApiError> {
    let staff = staff.require(StaffRole::Operator)?;
    let partner = PartnerId::new(partner_id).map_err(|_| ApiError::NotFound("No partner has this id.".into()))?;
    let plan: PlanId = plan_id.parse().map_err(|_| ApiError::NotFound("No such subscription tier.".into()))?;
    Ok(Json(billing::archive_tier(&state.store, partner, plan.as_str(), &staff.actor(), now_ms()).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PaymentSettingsRequest {
    /// `stripe`, or `sandbox` (sandbox partners only; also their default without settings).
    #[schema(pattern = "^(stripe|sandbox)$")]
    provider: String,
    /// Stripe's secret key (`sk_…` or a restricted `rk_…`); sealed at rest, never returned.
    #[schema(value_type = Option<String>)]
    secret_key: Option<SecretString>,
    /// The signing secret of the Stripe webhook endpoint (`whsec_…`).
    #[schema(value_type = Option<String>)]
    webhook_secret: Option<SecretString>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSettingsView {
    partner_id: i64,
    provider: &'static str,
}

/// Sets a partner's payment provider and its secrets. Operator role; audited (without secrets).
#[utoipa::path(put, path = "/admin/partners/{partnerId}/payments", tag = "Staff",
    params(("partnerId" = i64, Path)),
    request_body = PaymentSettingsRequest,
    responses((status = 200, body = PaymentSettingsView), (status = 400, description = "Invalid fields", body = super::error::Problem),
        (status = 404, description = "No such partner", body = super::error::Problem), UnsupportedMediaType),
    security(("bearer" = [])))]
pub async fn admin_payments(
    State(state): State<AppState>,
    staff: StaffAuth,
    ApiPath(partner_id): ApiPath<i64>,
    ApiJson(request): ApiJson<PaymentSettingsRequest>,
) -> Result<Json<PaymentSettingsView>, ApiError> {
    let staff = staff.require(StaffRole::Operator)?;
    let partner = PartnerId::new(partner_id).map_err(|_| ApiError::NotFound("No partner has this id.".into()))?;
    let partner = partner_of(&state, partner).await?;
    let provider = match request.provider.as_str() {
        "stripe" => "stripe",
        "sandbox" => "sandbox",
        _ => return Err(ApiError::invalid_field(INVALID, "provider", "must be one of stripe, sandbox")),
    };
    let config = PaymentsConfig { provider, secret_key: request.secret_key, webhook_secret: request.webhook_secret };
    billing::configure_payments(&state.store, &state.payments.kek, &partner, config, &staff.actor(), now_ms()).await?;
    Ok(Json(PaymentSettingsView { partner_id, provider }))
}

/// The members of a Stripe Event Onboard reads (read only once `Stripe-Signature` verified the
/// raw body; everything else in it is ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1", "object": "payment_intent", "metadata": {"invoice": "inv:0193a1b2-0c4d-7e6f-8a9b-0c1d2e3f4a5b"}}}}))]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeEventData,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StripeEventData {
    object: StripeObject,
}

/// A PaymentIntent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StripeObject {
    id: String,
    last_payment_error: Option<StripeObjectError>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StripeObjectError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StripeWebhookAnswer {
    /// `settled`, `duplicate` or `ignored`.
    effect: &'static str,
}

/// Stripe's webhooks for a partner (`payment_intent.succeeded`, `payment_intent.payment_failed`):
/// verified by `Stripe-Signature` against the partner's endpoint secret (5-minute tolerance),
/// recorded once, and settling a payment that waited on the customer (3-D Secure) or the bank.
#[utoipa::path(post, path = "/webhooks/payments/stripe/{partnerId}", tag = "Seed 003: accounts and subscriptions",
    params(("partnerId" = i64, Path), ("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256 of t.body>`")),
    request_body(content = StripeEvent),
    responses((status = 200, body = StripeWebhookAnswer),
        (status = 400, description = "A bad signature or body", body = super::error::Problem),
        (status = 404, description = "The partner takes no Stripe webhooks", body = super::error::Problem)))]
pub async fn stripe_webhook(
    State(state): State<AppState>,
    ApiPath(partner_id): ApiPath<i64>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<StripeWebhookAnswer>, ApiError> {
    let none = || ApiError::NotFound("This partner takes no Stripe webhooks.".into());
    let partner = PartnerId::new(partner_id).map_err(|_| none())?;
    let secret = billing::stripe_webhook_secret(&state.store, &state.payments.kek, partner).await?.ok_or_else(none)?;
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = now_ms();
    let tolerance = i64::try_from(state.payments.settings.webhook_tolerance_secs).unwrap_or(300);
    crate::payments::stripe::verify_signature(
        signature,
        &body,
        secrecy::ExposeSecret::expose_secret(&secret),
        now / 1000,
        tolerance,
    )
    .map_err(|e| ApiError::invalid_field("The webhook is not authentic.", "Stripe-Signature", e.to_string()))?;
    let raw = String::from_utf8(body.to_vec()).map_err(|_| ApiError::MalformedBody("The body is not UTF-8.".into()))?;
    let event: StripeEvent = serde_json::from_str(&raw)
        .map_err(|e| ApiError::MalformedBody(format!("The body is not a Stripe event: {e}.")))?;
    let failure = event
        .data
        .object
        .last_payment_error
        .map(|e| (e.code.unwrap_or_else(|| "card_declined".into()), e.decline_code, e.message.unwrap_or_default()));
    let applied = billing::IntentEvent {
        partner,
        event_id: event.id,
        event_type: event.kind,
        intent: event.data.object.id,
        invoice: event.data.object.metadata.get("onboard_invoice_id").cloned(),
        failure,
        raw_body: raw,
    };
    let effect = billing::apply_intent_event(&state.store, applied, now).await?;
    Ok(Json(StripeWebhookAnswer { effect }))
}
