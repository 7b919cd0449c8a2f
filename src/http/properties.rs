//! Property tests over every request parser: whatever arrives — any bytes, any JSON, the seeds'
//! field names with values of any type — the parser answers `Ok` or a list of problems, never a
//! panic (a panic would be a 500). Where a value round-trips (trace ids, idempotency keys), it does.

use axum::http::HeaderValue;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::domain::properties::json;

/// An object whose members are mostly the surface's own field names (so the parser gets past
/// "unknown field" and into each field's rules), with values of any type.
fn body(fields: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    let name = prop_oneof![9 => prop::sample::select(fields).prop_map(str::to_owned), 1 => ".{0,8}"];
    prop::collection::btree_map(name, json(), 0..fields.len() + 2).prop_map(|m| m.into_iter().collect())
}

/// Seed 001 binds names case-insensitively, so other spellings of its members are tried too.
const SEED_001: &[&str] = &["merchantId", "email", "additionalData", "MerchantID", "EMAIL"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn traceparent_never_panics(raw in prop_oneof![".{0,70}", "[0-9a-f-]{50,60}"]) {
        let _ = super::trace::parse_traceparent(&raw);
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_id(trace in "[0-9a-f]{32}", parent in "[0-9a-f]{16}", flags in "[0-9a-f]{2}") {
        prop_assume!(trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'));
        let parsed = super::trace::parse_traceparent(&format!("00-{trace}-{parent}-{flags}")).expect("valid");
        let hex: String = parsed.iter().map(|b| format!("{b:02x}")).collect();
        prop_assert_eq!(hex, trace);
    }

    #[test]
    fn idempotency_keys_are_taken_bare_or_quoted(key in "[!#-~]{1,255}", raw in "[ -~]{0,300}") {
        let bare = HeaderValue::from_str(&key).unwrap();
        prop_assert_eq!(super::idempotency::parse_key(&bare), Some(key.clone()));
        let quoted = HeaderValue::from_str(&format!("\"{key}\"")).unwrap();
        prop_assert_eq!(super::idempotency::parse_key(&quoted), Some(key));
        if let Ok(value) = HeaderValue::from_str(&raw) && let Some(parsed) = super::idempotency::parse_key(&value) {
            prop_assert!((1..=255).contains(&parsed.len()) && parsed.bytes().all(|b| b.is_ascii_graphic() && b != b'"'));
        }
    }

    #[test]
    fn seed_000_bodies_never_panic(value in prop_oneof![json(), body(&super::partner_users::FIELDS).prop_map(Value::Object)]) {
        let _ = super::partner_users::parse_registration(&value);
    }

    #[test]
    fn seed_001_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), value in body(SEED_001)) {
        let _ = super::user::parse_create_user(&bytes);
        let _ = super::user::parse_create_user(&serde_json::to_vec(&Value::Object(value)).unwrap());
    }

    #[test]
    fn seed_002_bodies_never_panic(value in body(&super::prospects::FIELDS)) {
        let _ = super::prospects::parse_registration(&value, time::macros::date!(2026 - 12 - 04));
    }

    #[test]
    fn seed_003_bodies_never_panic(value in body(&super::signup::FIELDS)) {
        let _ = super::signup::parse_request(&value);
    }
}
