//! `GET /openapi.json` and the API reference at `GET /docs`.
//!
//! The document is built from the handlers' `#[utoipa::path]` annotations by the same
//! `OpenApiRouter` that builds the router (`super::api`), then finished here: the introductions of
//! the groups, camelCase operation ids, and the headers every answer carries. `/docs` is Swagger UI,
//! vendored in `assets/swagger-ui` (version and licence in `VENDORED.md`) and served from the
//! binary, so the reference works with no network; its page forbids inline scripts and any
//! third-party origin.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::{Modify, OpenApi};

use super::AppState;
use super::extract::ApiPath;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "Onboard", description = include_str!("docs/intro.md")),
    components(schemas(super::error::Problem, super::error::FieldError)),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A partner's access token from `POST /oauth/token`, an end user's from seed 003's sign-up, or a staff token (`onboard staff token`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "clientBasic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("OAuth client id and secret (RFC 6749 §2.3.1); they may instead be sent as `client_id` and `client_secret` in the form"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "partnerApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "PartnerApiKey",
                "The partner's API key (`onb_live_…` or `onb_sandbox_…`)",
            ))),
        );
    }
}

/// The groups of the reference, in reading order: the four seed surfaces first. Each operation's
/// `tag` names one of them; `every_operation_is_in_a_known_group` holds the two lists together.
pub const GROUPS: [(&str, &str); 12] = [
    ("Seed 000: partner users", include_str!("docs/seed-000.md")),
    ("Seed 001: users", include_str!("docs/seed-001.md")),
    ("Seed 002: prospects and CIP", include_str!("docs/seed-002.md")),
    ("Seed 003: sign-up and profile", include_str!("docs/seed-003-signup.md")),
    ("Seed 003: identity verification", include_str!("docs/seed-003-kyc.md")),
    ("Seed 003: accounts and subscriptions", include_str!("docs/seed-003-billing.md")),
    ("OAuth 2.0", include_str!("docs/oauth.md")),
    ("Partner account", include_str!("docs/partner.md")),
    ("Partner webhooks", include_str!("docs/webhooks.md")),
    ("Staff", include_str!("docs/staff.md")),
    ("Operations", "Liveness, readiness (database, sanctions list, job queue) and Prometheus metrics. No credentials."),
    ("Documentation", "This reference and the OpenAPI 3.1 document it is rendered from. No credentials."),
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json)).routes(routes!(docs_page)).routes(routes!(asset))
}

/// The document, built from the same annotations the router is built from.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = super::api().split_for_parts().1;
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.tags = Some(
        GROUPS.iter().map(|(name, text)| TagBuilder::new().name(*name).description(Some(*text)).build()).collect(),
    );
    headers::declare(doc.components.get_or_insert_with(Default::default));
    for item in doc.paths.paths.values_mut() {
        let post = item.post.as_mut().into_iter().map(|operation| (true, operation));
        let others = [&mut item.get, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten();
        for (is_post, operation) in post.chain(others.map(|operation| (false, operation))) {
            if let Some(id) = operation.operation_id.as_mut() {
                *id = camel_case(id);
            }
            headers::attach(operation, is_post);
        }
    }
    doc
}

/// `create_user` → `createUser`: generated clients name their methods after operation ids, and
/// the handlers' Rust names are snake case.
fn camel_case(id: &str) -> String {
    let mut parts = id.split('_');
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

fn spec() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| openapi().to_pretty_json().expect("the OpenAPI document serialises"))
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "Documentation",
    responses((status = 200, body = Object, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], spec())
}

/// The API reference: Swagger UI over `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "Documentation",
    responses((status = 200, body = String, description = "HTML", content_type = "text/html")))]
async fn docs_page() -> Response {
    const PAGE: &str = concat!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Onboard API reference</title>"#,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        r#"<link rel="stylesheet" href="docs/swagger-ui.css"></head><body>"#,
        r#"<noscript><p>The reference needs JavaScript; the document itself is <a href="openapi.json">openapi.json</a>.</p></noscript>"#,
        r#"<div id="swagger-ui"></div><script src="docs/swagger-ui-bundle.js"></script><script src="docs/docs.js"></script>"#,
        "</body></html>"
    );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
        ],
        PAGE,
    )
        .into_response()
}

/// Only this origin: no inline or third-party scripts, no outside fetches. Swagger UI sets inline
/// `style` attributes and draws icons as `data:` SVGs, hence those two allowances.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A file of the reference page: the vendored Swagger UI and Onboard's start-up script.
#[utoipa::path(get, path = "/docs/{asset}", tag = "Documentation",
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `docs.js`")),
    responses(
        (status = 200, description = "The file (gzip-encoded when the client accepts it)", content((String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "No such file", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Result<Response, super::error::ApiError> {
    static BUNDLE: Gzipped = Gzipped::new(include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js.gz")));
    static CSS: Gzipped = Gzipped::new(include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css.gz")));
    const JS: &str = "text/javascript; charset=utf-8";
    let accepts_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(accepts_gzip_coding);
    let (content_type, mut response) = match name.as_str() {
        "swagger-ui-bundle.js" => (JS, BUNDLE.respond(accepts_gzip)),
        "swagger-ui.css" => ("text/css; charset=utf-8", CSS.respond(accepts_gzip)),
        "docs.js" => (JS, include_str!("docs.js").into_response()),
        _ => return Err(super::error::ApiError::NotFound("No such file.".into())),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(response)
}

/// One member of `Accept-Encoding` (RFC 9110 §12.5.3): `gzip`, or `*`, unless weighted `q=0`.
fn accepts_gzip_coding(member: &str) -> bool {
    let mut parts = member.split(';').map(str::trim);
    let coding = parts.next().unwrap_or_default();
    let refused = parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)));
    (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
}

/// A file build.rs gzipped, and its inflated bytes for the rare client that does not take gzip
/// (made on first use and kept).
struct Gzipped {
    gz: &'static [u8],
    inflated: OnceLock<Vec<u8>>,
}

impl Gzipped {
    const fn new(gz: &'static [u8]) -> Self {
        Self { gz, inflated: OnceLock::new() }
    }

    fn respond(&'static self, accepts_gzip: bool) -> Response {
        if accepts_gzip {
            return ([(header::CONTENT_ENCODING, "gzip")], self.gz).into_response();
        }
        // build.rs wrote a ten-byte header, the DEFLATE stream, and an eight-byte trailer.
        let inflated = self.inflated.get_or_init(|| {
            miniz_oxide::inflate::decompress_to_vec(&self.gz[10..self.gz.len() - 8])
                .expect("build.rs wrote a valid stream")
        });
        inflated.as_slice().into_response()
    }
}

/// The headers every route shares, declared once in `components` and referenced from each
/// operation, so no annotation has to repeat them (and none can forget them).
mod headers {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{Components, Ref, RefOr, Required};

    fn string(min: usize, max: usize) -> ObjectBuilder {
        ObjectBuilder::new().schema_type(Type::String).min_length(Some(min)).max_length(Some(max))
    }

    pub fn declare(components: &mut Components) {
        for (status, name, description) in [
            ("401", "Unauthorized", "Missing or invalid credentials (`WWW-Authenticate` names the scheme)"),
            ("413", "PayloadTooLarge", "The body is larger than `http.max_body_bytes`"),
            ("400", "BadRequest", "Invalid fields or headers: `errors` names each"),
            ("403", "Forbidden", "The credential does not allow this (another role or scope)"),
            ("404", "NotFound", "Nothing has this id (or not for this caller)"),
            ("409", "IdempotencyKeyInUse", "A request with this Idempotency-Key is still running; see `Retry-After`"),
            ("422", "IdempotencyKeyReused", "This Idempotency-Key was used with a different request"),
        ] {
            let problem = utoipa::openapi::ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            let mut response = utoipa::openapi::ResponseBuilder::new()
                .description(format!("{description} ({status})"))
                .content("application/problem+json", problem)
                .build();
            response.headers.insert("traceresponse".into(), RefOr::Ref(reference("headers", "traceresponse")));
            if status == "409" {
                response.headers.insert("Retry-After".into(), RefOr::Ref(reference("headers", "Retry-After")));
            }
            components.responses.insert(name.into(), RefOr::T(response));
        }
        let header = |name: &str, schema: ObjectBuilder, description: &str| {
            (
                name.to_owned(),
                RefOr::T(HeaderBuilder::new().schema(Some(schema)).description(Some(description)).build()),
            )
        };
        components.headers.extend([
            header("Idempotent-Replayed", ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"])),
                "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`"),
            header("Retry-After", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)),
                "Seconds to wait before trying again"),
            header("traceresponse", string(55, 55),
                "W3C Trace Context of this answer (`00-<trace id>-<span id>-<flags>`): quote the trace id when reporting a problem"),
        ]);
        let parameter = |name: &str, schema: ObjectBuilder, description: &str| {
            let parameter = ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .schema(Some(schema))
                .description(Some(description))
                .build();
            (name.to_owned(), RefOr::T(parameter))
        };
        components.parameters.extend([
            parameter("Idempotency-Key", ObjectBuilder::new().schema_type(Type::String).pattern(Some(r#"^(?:[!#-~]{1,255}|"[!#-~]{1,255}")$"#)),
                "1–255 visible ASCII characters, bare or in double quotes; honoured when the request carries partner or \
                 end-user credentials. The first final answer is kept 24 hours and replayed to a repeat; the same key \
                 with another request is 422, a repeat while the first runs is 409"),
            parameter("traceparent", ObjectBuilder::new().schema_type(Type::String),
                "W3C Trace Context of the caller (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`): the answer continues \
                 its trace. A malformed value is ignored and a new trace begins, as Trace Context requires"),
        ]);
    }

    fn reference(kind: &str, name: &str) -> Ref {
        Ref::new(format!("#/components/{kind}/{name}"))
    }

    /// `post`: a POST. The idempotency layer reads `Idempotency-Key` on every POST (a malformed one
    /// is a 400 before anything else) and honours it when the request carries partner or end-user
    /// credentials (`idempotency::layer`): on the routes that take those, never on staff routes.
    pub fn attach(operation: &mut Operation, post: bool) {
        let staff = operation.tags.as_ref().is_some_and(|tags| tags.iter().any(|t| t == "Staff"));
        let schemes: Vec<String> = operation
            .security
            .iter()
            .flatten()
            .filter_map(|r| serde_json::to_value(r).ok()?.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
            .flatten()
            .collect();
        let secured = !schemes.is_empty();
        let keyed = post && !staff && schemes.iter().any(|s| s == "partnerApiKey" || s == "bearer");
        let responses = &mut operation.responses.responses;
        // Every credential extractor answers 401, and the size limit applies before any handler.
        if secured && !responses.contains_key("401") {
            responses.insert("401".into(), RefOr::Ref(reference("responses", "Unauthorized")));
        }
        // Staff routes each need a role (`StaffAuth::require`).
        if staff && !responses.contains_key("403") {
            responses.insert("403".into(), RefOr::Ref(reference("responses", "Forbidden")));
        }
        if operation.request_body.is_some() && !responses.contains_key("413") {
            responses.insert("413".into(), RefOr::Ref(reference("responses", "PayloadTooLarge")));
        }
        // A path segment that cannot be the id it stands for names nothing (`extract::ApiPath`).
        let in_path = |p: &RefOr<utoipa::openapi::path::Parameter>| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path);
        if operation.parameters.iter().flatten().any(in_path) && !responses.contains_key("404") {
            responses.insert("404".into(), RefOr::Ref(reference("responses", "NotFound")));
        }
        if post {
            responses.entry("400".into()).or_insert_with(|| RefOr::Ref(reference("responses", "BadRequest")));
            // A route whose own 400 has another shape (RFC 6749's on /oauth/…) still gets the
            // layer's problem document for a malformed key.
            if let Some(RefOr::T(bad)) = responses.get_mut("400") {
                let problem =
                    utoipa::openapi::ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
                bad.content.entry("application/problem+json".into()).or_insert(RefOr::T(problem));
            }
        }
        if keyed {
            for (status, name) in [("409", "IdempotencyKeyInUse"), ("422", "IdempotencyKeyReused")] {
                responses.entry(status.into()).or_insert_with(|| RefOr::Ref(reference("responses", name)));
            }
        }
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        parameters.push(RefOr::Ref(reference("parameters", "traceparent")));
        if keyed {
            parameters.push(RefOr::Ref(reference("parameters", "Idempotency-Key")));
        }
        for (status, response) in operation.responses.responses.iter_mut() {
            let RefOr::T(response) = response else { continue };
            // A problem document is always served as `application/problem+json` (RFC 9457).
            if let Some(content) = response.content.shift_remove("application/json") {
                let problem = matches!(&content, RefOr::T(c) if matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")));
                let media = if problem { "application/problem+json" } else { "application/json" };
                response.content.insert(media.into(), content);
            }
            // OpenAPI requires a description; the status's reason phrase is the honest default.
            if response.description.is_empty() {
                let reason =
                    axum::http::StatusCode::from_bytes(status.as_bytes()).ok().and_then(|s| s.canonical_reason());
                response.description = reason.unwrap_or("Answer").to_owned();
            }
            response.headers.insert("traceresponse".into(), RefOr::Ref(reference("headers", "traceresponse")));
            // Final answers are stored and replayed; 401, 403, 409, 429 and 5xx are not.
            let stored = !matches!(status.as_str(), "401" | "403" | "409" | "429") && !status.starts_with('5');
            if keyed && stored {
                response
                    .headers
                    .insert("Idempotent-Replayed".into(), RefOr::Ref(reference("headers", "Idempotent-Replayed")));
            }
            // On a keyed route's 409 the header comes with the layer's "still running" answer.
            if matches!(status.as_str(), "429" | "503") || (keyed && status == "409") {
                response.headers.insert("Retry-After".into(), RefOr::Ref(reference("headers", "Retry-After")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_is_taken_unless_refused_by_weight() {
        for (member, takes) in [
            ("gzip", true),
            ("GZIP;q=0.5", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.0", false),
            ("br", false),
        ] {
            assert_eq!(super::accepts_gzip_coding(member), takes, "{member}");
        }
    }
}
