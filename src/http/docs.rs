//! `GET /openapi.json` (generated from the handlers' annotations) and `GET /docs`, a reference
//! page rendered on the server from that same document. Written here rather than served by a
//! Swagger/Scalar crate because those load their JavaScript from a CDN at run time, and an
//! offline install must still show its documentation.

use std::fmt::Write as _;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Onboard", description = "Partner user registration and onboarding for fintech platforms."),
    paths(
        super::ops::healthz, super::ops::readyz, super::ops::render_metrics,
        super::oauth::token, super::oauth::revoke, super::oauth::jwks,
        super::signup::create_user, super::signup::me,
        super::partner::whoami, super::partner::update_settings, super::partner::roll_api_key,
        super::user::create_user, super::user::get_user,
        super::partner_users::register, super::partner_users::show,
        super::prospects::register, super::prospects::user_status, super::prospects::correct,
        super::consents::send_code, super::consents::give, super::consents::evidence, super::prospects::events,
        super::admin::screen, super::admin::current_list, super::admin::jobs, super::admin::retry_job,
        super::admin::compliance_cases, super::admin::clear_case, super::admin::block_case, super::admin::user_timeline,
        super::kyc::put_profile, super::kyc::user_access_token, super::kyc::prospect_access_token,
        super::kyc::sumsub_webhook, super::kyc::configure,
        super::webhooks::create, super::webhooks::list, super::webhooks::update, super::webhooks::delete,
        super::webhooks::rotate, super::webhooks::test, super::webhooks::events, super::webhooks::replay,
        super::webhooks::replay_failed,
        super::billing::list_accounts, super::billing::open_account, super::billing::show_account,
        super::billing::tiers, super::billing::start_subscription, super::billing::list_subscriptions,
        super::billing::cancel_subscription, super::billing::get_invoice, super::billing::pay_invoice,
        super::billing::admin_create_plan, super::billing::admin_plans, super::billing::admin_archive_plan,
        super::billing::admin_payments, super::billing::stripe_webhook,
    ),
    components(schemas(super::error::Problem, super::error::FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "partner", description = "Calls made by partners with their credentials"),
        (name = "oauth", description = "Access tokens for partners; refresh and revocation for end users"),
        (name = "signup", description = "Seed 003: end users sign themselves up with an e-mailed code"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "admin", description = "Staff routes (compliance, operators) with admin tokens"),
        (name = "kyc", description = "Seed 003 step 3: the identity verification provider's webhooks"),
        (name = "billing", description = "Seed 003 step 4: accounts, subscription tiers, subscriptions, invoices and payment"),
        (name = "webhooks", description = "A partner's webhook endpoints, its events and their deliveries (Standard Webhooks v1)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "partnerApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("PartnerApiKey"))),
        );
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json)).route("/docs", get(docs_page))
}

fn spec() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises"))
}

async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], spec())
}

async fn docs_page() -> Html<&'static str> {
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(&serde_json::from_str(spec()).unwrap_or_default())))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn render(spec: &Value) -> String {
    let title = spec.pointer("/info/title").and_then(Value::as_str).unwrap_or("API");
    let version = spec.pointer("/info/version").and_then(Value::as_str).unwrap_or("");
    let mut toc = String::new();
    let mut body = String::new();
    if let Some(paths) = spec.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for (method, op) in item {
                let anchor = format!("{method}-{}", path.replace(['/', '{', '}', '.'], "-"));
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or("");
                let _ = writeln!(
                    toc,
                    r##"<li><a href="#{anchor}"><code class="m {method}">{}</code> {}</a></li>"##,
                    method.to_uppercase(),
                    escape(path)
                );
                let _ = writeln!(
                    body,
                    r#"<section id="{anchor}"><h2><code class="m {method}">{}</code> <code>{}</code></h2><p>{}</p>"#,
                    method.to_uppercase(),
                    escape(path),
                    escape(op.get("description").and_then(Value::as_str).unwrap_or(summary))
                );
                for (label, key) in
                    [("Parameters", "parameters"), ("Request body", "requestBody"), ("Responses", "responses")]
                {
                    if let Some(part) = op.get(key) {
                        let pretty = serde_json::to_string_pretty(part).unwrap_or_default();
                        let _ = writeln!(body, "<h3>{label}</h3><pre>{}</pre>", escape(&pretty));
                    }
                }
                body.push_str("</section>\n");
            }
        }
    }
    let schemas = spec.pointer("/components/schemas").map(|s| serde_json::to_string_pretty(s).unwrap_or_default());
    if let Some(schemas) = schemas {
        let _ = writeln!(body, r#"<section id="schemas"><h2>Schemas</h2><pre>{}</pre></section>"#, escape(&schemas));
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{t} API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:0;display:flex}}nav{{width:22rem;padding:1rem;background:#f6f7f9;height:100vh;overflow:auto;position:sticky;top:0}}
main{{padding:1rem 2rem;max-width:60rem}}ul{{list-style:none;padding:0}}a{{color:inherit;text-decoration:none}}pre{{background:#f6f7f9;padding:.75rem;overflow:auto;font-size:13px}}
.m{{display:inline-block;min-width:4em;font-weight:bold}}.get{{color:#2b7a0b}}.post{{color:#0b4f9c}}.patch,.put{{color:#9c6b0b}}.delete{{color:#9c0b0b}}section{{border-bottom:1px solid #eee;padding-bottom:1rem}}</style>
</head><body><nav><h1>{t}</h1><p>version {v} · <a href="/openapi.json">openapi.json</a></p><ul>{toc}</ul></nav><main>{body}</main></body></html>"#,
        t = escape(title),
        v = escape(version),
    )
}
