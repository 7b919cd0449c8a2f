//! Sumsub's wire protocol (docs.sumsub.com: "Authentication", "Create applicant", "Generate
//! access token", "Get applicant review status", "Webhooks"; shared/PROTOCOLS.md): request
//! signatures, the three calls Onboard makes, webhook digests, and webhook bodies parsed into
//! `domain::kyc` types.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Sha256, Sha512};

use super::KycError;
use crate::domain::kyc::{EventKind, KycEvent, RejectType, Review, ReviewAnswer};

/// What a path segment or query value keeps unencoded (RFC 3986 unreserved): level names with
/// reserved characters must be encoded, or Sumsub's signature check fails.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `X-App-Access-Sig`: lowercase hex HMAC-SHA256(secret key, ts + METHOD + path with query + body).
pub fn request_signature(secret_key: &str, ts: i64, method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(ts.to_string().as_bytes());
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(path_and_query.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `X-Payload-Digest-Alg`: which HMAC signs a webhook body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlg {
    /// The header's values; Sumsub's default when the header is absent is SHA-256.
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        match raw.map(str::trim) {
            None | Some("HMAC_SHA256_HEX") => Some(DigestAlg::Sha256),
            Some("HMAC_SHA1_HEX") => Some(DigestAlg::Sha1),
            Some("HMAC_SHA512_HEX") => Some(DigestAlg::Sha512),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "HMAC_SHA1_HEX",
            DigestAlg::Sha256 => "HMAC_SHA256_HEX",
            DigestAlg::Sha512 => "HMAC_SHA512_HEX",
        }
    }
}

fn mac_bytes(secret: &[u8], alg: DigestAlg, body: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(secret: &[u8], body: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        DigestAlg::Sha1 => run::<Hmac<sha1::Sha1>>(secret, body),
        DigestAlg::Sha256 => run::<Hmac<Sha256>>(secret, body),
        DigestAlg::Sha512 => run::<Hmac<Sha512>>(secret, body),
    }
}

/// `X-Payload-Digest` of a body: hex HMAC with the webhook secret.
pub fn payload_digest(secret: &str, alg: DigestAlg, body: &[u8]) -> String {
    hex::encode(mac_bytes(secret.as_bytes(), alg, body))
}

/// Whether `presented` (hex, either case) is the body's digest; compared in constant time.
pub fn verify_digest(secret: &str, alg: DigestAlg, body: &[u8], presented: &str) -> bool {
    let Ok(presented) = hex::decode(presented.trim()) else { return false };
    let expected = mac_bytes(secret.as_bytes(), alg, body);
    expected.len() == presented.len()
        && bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_slice(), presented.as_slice()))
}

/// Milliseconds since the epoch in Sumsub's `createdAtMs` spelling (`"2024-05-17 13:23:19.321"`,
/// UTC): how the sandbox's simulated webhooks date themselves.
pub fn created_at_text(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// `createdAtMs` as Sumsub sends it (`"2024-05-17 13:23:19.321"`, UTC) or as a number.
fn created_at_ms(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
            let at = time::PrimitiveDateTime::parse(s.trim(), format).ok()?.assume_utc();
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
        }
        _ => None,
    }
}

/// `reviewDate` as Sumsub writes it (`"2024-05-17 13:23:19+0000"`, UTC).
fn review_date(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let at = time::PrimitiveDateTime::parse(text.get(..19)?, format).ok()?.assume_utc();
    // Whole seconds: the end of that second, so a review is never dated before a webhook that
    // came within the same second ahead of it.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok().map(|ms| ms + 999)
}

fn review(result: &Value) -> Option<Review> {
    let answer = ReviewAnswer::parse(result.get("reviewAnswer")?.as_str()?)?;
    let reject_type = result.get("reviewRejectType").and_then(Value::as_str).and_then(RejectType::parse);
    let labels = result
        .get("rejectLabels")
        .and_then(Value::as_array)
        .map(|labels| labels.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    Some(Review { answer, reject_type, labels })
}

/// Parses a webhook body. Comments (`moderationComment`, `clientComment`) are not read: they
/// stay in the stored raw body for audit and never reach events or partners.
pub fn parse_webhook(body: &[u8]) -> Result<KycEvent, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
    let type_name = text("type").ok_or("no `type`")?;
    let external_user_id = text("externalUserId").ok_or("no `externalUserId`")?;
    let created_at_ms = created_at_ms(json.get("createdAtMs")).ok_or("no valid `createdAtMs`")?;
    Ok(KycEvent {
        kind: EventKind::parse(&type_name),
        type_name,
        applicant_id: text("applicantId"),
        external_user_id,
        level_name: text("levelName"),
        created_at_ms,
        review_status: text("reviewStatus"),
        review: json.get("reviewResult").and_then(review),
    })
}

/// A Sumsub app's API client (one per partner: each has its own app token and secret key).
pub struct SumsubClient {
    http: reqwest::Client,
    base_url: String,
    app_token: SecretString,
    secret_key: SecretString,
}

impl SumsubClient {
    pub fn new(http: reqwest::Client, base_url: &str, app_token: SecretString, secret_key: SecretString) -> Self {
        Self { http, base_url: base_url.trim_end_matches('/').to_owned(), app_token, secret_key }
    }

    /// One signed call; the status and body of any answer.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value), KycError> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = request_signature(self.secret_key.expose_secret(), ts, method.as_str(), path, &body);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("X-App-Token", self.app_token.expose_secret())
            .header("X-App-Access-Ts", ts.to_string())
            .header("X-App-Access-Sig", signature)
            .header("Accept", "application/json");
        if !body.is_empty() {
            request = request.header("Content-Type", "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| KycError::Provider(format!("Sumsub unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response.bytes().await.map_err(|e| KycError::Provider(format!("Sumsub answer: {e}")))?;
        let json = serde_json::from_slice(&text).unwrap_or(Value::Null);
        Ok((status, json))
    }

    fn failed(what: &str, status: u16, body: &Value) -> KycError {
        // Sumsub's error bodies carry `description`; they hold no applicant data.
        let description = body.get("description").and_then(Value::as_str).unwrap_or("no description");
        KycError::Provider(format!("Sumsub {what}: HTTP {status}: {description}"))
    }

    /// Creates the applicant (or finds the one this external user id already has); its id.
    pub async fn create_applicant(&self, external_user_id: &str, level_name: &str) -> Result<String, KycError> {
        let path = format!("/resources/applicants?levelName={}", utf8_percent_encode(level_name, UNRESERVED));
        let body = serde_json::json!({ "externalUserId": external_user_id });
        let (status, answer) = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        match status {
            200 | 201 => answer
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| KycError::Provider("Sumsub created an applicant without an id".into())),
            // A retry after a lost answer: the applicant exists already.
            409 => self.applicant_by_external_id(external_user_id).await,
            _ => Err(Self::failed("create applicant", status, &answer)),
        }
    }

    async fn applicant_by_external_id(&self, external_user_id: &str) -> Result<String, KycError> {
        let path =
            format!("/resources/applicants/-;externalUserId={}/one", utf8_percent_encode(external_user_id, UNRESERVED));
        let (status, answer) = self.call(reqwest::Method::GET, &path, None).await?;
        match (status, answer.get("id").and_then(Value::as_str)) {
            (200, Some(id)) => Ok(id.to_owned()),
            _ => Err(Self::failed("get applicant", status, &answer)),
        }
    }

    /// An SDK access token for the applicant.
    pub async fn access_token(
        &self,
        external_user_id: &str,
        level_name: &str,
        ttl_secs: u64,
    ) -> Result<String, KycError> {
        let body = serde_json::json!({ "userId": external_user_id, "levelName": level_name, "ttlInSecs": ttl_secs });
        let (status, answer) = self.call(reqwest::Method::POST, "/resources/accessTokens/sdk", Some(body)).await?;
        match (status, answer.get("token").and_then(Value::as_str)) {
            (200, Some(token)) => Ok(token.to_owned()),
            _ => Err(Self::failed("access token", status, &answer)),
        }
    }

    /// The applicant's review status: the raw answer and, when the review is done or on hold,
    /// the event it amounts to.
    pub async fn applicant_status(
        &self,
        applicant_id: &str,
        external_user_id: &str,
        now: i64,
    ) -> Result<(Value, Option<KycEvent>), KycError> {
        let path = format!("/resources/applicants/{}/status", utf8_percent_encode(applicant_id, UNRESERVED));
        let (status, answer) = self.call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            return Err(Self::failed("applicant status", status, &answer));
        }
        let event = status_event(&answer, applicant_id, external_user_id, now);
        Ok((answer, event))
    }
}

/// What a status reading amounts to: a review when completed, a hold when on hold. It is dated
/// by the provider's `reviewDate` when there is one (so it orders against webhooks by the
/// provider's clock), else by when it was read.
pub fn status_event(answer: &Value, applicant_id: &str, external_user_id: &str, now: i64) -> Option<KycEvent> {
    let review_status = answer.get("reviewStatus").and_then(Value::as_str)?;
    let (kind, review) = match review_status {
        "completed" => (EventKind::Reviewed, Some(review(answer.get("reviewResult")?)?)),
        "onHold" => (EventKind::OnHold, None),
        _ => return None,
    };
    Some(KycEvent {
        type_name: kind.as_str().to_owned(),
        kind: Some(kind),
        applicant_id: Some(applicant_id.to_owned()),
        external_user_id: external_user_id.to_owned(),
        level_name: answer.get("levelName").and_then(Value::as_str).map(str::to_owned),
        created_at_ms: answer.get("reviewDate").and_then(review_date).unwrap_or(now),
        review_status: Some(review_status.to_owned()),
        review,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_independent_vectors() {
        // Computed with Python's hmac module: hmac.new(b"whsec-test", body, sha).hexdigest().
        let body = br#"{"applicantId":"a1","type":"applicantReviewed"}"#;
        let vectors = [
            (DigestAlg::Sha1, "35f8a558e06fd333e472ba4341d13fb3a93f9be3"),
            (DigestAlg::Sha256, "c21560fe372a4d972f6dbf0b48a8d08200f59e2923ae73d569b95f7c71c2b5ad"),
            (
                DigestAlg::Sha512,
                "ec029be480346e48695218a0172a1027138c2b4f911e3ea06fd574f228f89753\
                 209e72ad46d6c2bae8d3ff841017c1a1de604436d682ff7c76d6d0f27e3cbe6a",
            ),
        ];
        for (alg, expected) in vectors {
            let digest = payload_digest("whsec-test", alg, body);
            assert_eq!(digest, expected, "{alg:?}");
            assert_eq!(DigestAlg::parse(Some(alg.as_str())), Some(alg));
            assert!(verify_digest("whsec-test", alg, body, &digest));
            assert!(verify_digest("whsec-test", alg, body, &digest.to_uppercase()));
            assert!(!verify_digest("whsec-other", alg, body, &digest));
            assert!(!verify_digest("whsec-test", alg, b"{}", &digest));
            assert!(!verify_digest("whsec-test", alg, body, "zz"));
        }
    }

    #[test]
    fn webhooks_parse_with_sumsubs_timestamp() {
        let body =
            br#"{"applicantId":"5cb56e8e0a975a35f333cb83","externalUserId":"usr:1","levelName":"basic-kyc-level",
            "type":"applicantReviewed","reviewStatus":"completed","createdAtMs":"2020-02-21 13:23:19.321",
            "reviewResult":{"reviewAnswer":"RED","rejectLabels":["SCREENSHOTS"],"reviewRejectType":"RETRY",
            "clientComment":"internal"}}"#;
        let event = parse_webhook(body).unwrap();
        assert_eq!(event.kind, Some(EventKind::Reviewed));
        assert_eq!(event.created_at_ms, 1_582_291_399_321);
        let review = event.review.unwrap();
        assert_eq!((review.answer, review.reject_type), (ReviewAnswer::Red, Some(RejectType::Retry)));
        assert_eq!(review.labels, ["SCREENSHOTS"]);
        let other = parse_webhook(br#"{"type":"applicantActivated","externalUserId":"u","createdAtMs":5}"#).unwrap();
        assert_eq!((other.kind, other.created_at_ms), (None, 5));
        assert!(parse_webhook(b"{}").is_err());
    }

    #[test]
    fn request_signatures_cover_time_method_path_and_body() {
        let a = request_signature("key", 1_700_000_000, "post", "/resources/applicants?levelName=basic", b"{}");
        let b = request_signature("key", 1_700_000_000, "POST", "/resources/applicants?levelName=basic", b"{}");
        assert_eq!(a, b);
        // Python: hmac.new(b"key", b"1700000000POST/resources/applicants?levelName=basic{}", sha256).
        assert_eq!(a, "afcbc2a3cdccef3d75fea769311da50be38040541bbc6bd0ccc20ca783a96cad");
        assert_ne!(a, request_signature("key", 1_700_000_001, "POST", "/resources/applicants?levelName=basic", b"{}"));
        assert_eq!(utf8_percent_encode("kyc level/1", UNRESERVED).to_string(), "kyc%20level%2F1");
    }
}
