//! The wire shapes of ASP.NET Core, which seed 001's partners were written against:
//! `ValidationProblemDetails` with property-keyed `errors`, and System.Text.Json's messages for
//! JSON it cannot convert (`Path: $.merchantId | LineNumber: 0 | BytePositionInLine: 19.`).
//!
//! serde_json does not expose token positions, so `JsonSpans` re-scans the (already validated)
//! body once to find where each value sits.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::error::problem_response;
use super::trace::TraceContext;

/// Errors keyed by property (`Email`) or JSON path (`$.merchantId`), in insertion order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValidationErrors {
    entries: Vec<(String, Vec<String>)>,
}

impl ValidationErrors {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, messages)) => messages.push(message.into()),
            None => self.entries.push((key, vec![message.into()])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(key, message);
        errors
    }
}

impl Serialize for ValidationErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (key, messages) in &self.entries {
            map.serialize_entry(key, messages)?;
        }
        map.end()
    }
}

/// ASP.NET Core's `ValidationProblemDetails`, members in its order.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationProblemDetails<'a> {
    /// Messages keyed by property (`Email`) or JSON path (`$.merchantId`).
    #[schema(value_type = std::collections::HashMap<String, Vec<String>>)]
    errors: &'a ValidationErrors,
    #[serde(rename = "type")]
    problem_type: &'static str,
    title: &'static str,
    status: u16,
    trace_id: String,
}

impl IntoResponse for ValidationErrors {
    fn into_response(self) -> Response {
        let body = ValidationProblemDetails {
            errors: &self,
            problem_type: "https://tools.ietf.org/html/rfc7231#section-6.5.1",
            title: "One or more validation errors occurred.",
            status: 400,
            trace_id: TraceContext::current().trace_id_field(),
        };
        let mut response = problem_response(StatusCode::BAD_REQUEST, &body);
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json; charset=utf-8"),
        );
        response
    }
}

/// A parsed JSON body together with where each of its values sits in the raw bytes.
pub struct JsonBody<'a> {
    raw: &'a [u8],
    spans: HashMap<String, (usize, usize)>,
    pub value: Value,
}

impl<'a> JsonBody<'a> {
    /// Parses `raw`; an empty or unparseable body yields the errors ASP.NET would give.
    pub fn parse(raw: &'a [u8]) -> Result<Self, ValidationErrors> {
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(ValidationErrors::single("", "A non-empty request body is required."));
        }
        let value: Value = serde_json::from_slice(raw).map_err(|e| {
            // serde_json counts lines and columns from 1; System.Text.Json from 0.
            let message = format!(
                "The JSON payload is invalid: {}. Path: $ | LineNumber: {} | BytePositionInLine: {}.",
                syntax_reason(&e),
                e.line().saturating_sub(1),
                e.column().saturating_sub(1)
            );
            ValidationErrors::single("$", message)
        })?;
        let mut spans = HashMap::new();
        scan(raw, 0, "$", &mut spans);
        Ok(Self { raw, spans, value })
    }

    /// System.Text.Json's message for a value at `path` that is not a `dotnet_type`.
    pub fn conversion_error(&self, path: &str, dotnet_type: &str) -> String {
        let (line, column) = self.position_of(path);
        format!(
            "The JSON value could not be converted to {dotnet_type}. Path: {path} | LineNumber: {line} | BytePositionInLine: {column}."
        )
    }

    /// The property `name` of `object` (the object at `path`) as System.Text.Json's web defaults
    /// bind it: names compare case-insensitively (`MerchantId`, `merchantid`), and of several
    /// spellings the last in the document wins. Returns the value with its path as sent
    /// (`$.MerchantId`), which is what .NET's error messages name.
    pub fn property<'v>(
        &self,
        object: &'v serde_json::Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Option<(String, &'v Value)> {
        self.properties(object, path, name).pop()
    }

    /// Every spelling of property `name` in `object`, in document order: System.Text.Json reads
    /// (and converts) each one, so an earlier one of the wrong type fails even when the last is fine.
    pub fn properties<'v>(
        &self,
        object: &'v serde_json::Map<String, Value>,
        path: &str,
        name: &str,
    ) -> Vec<(String, &'v Value)> {
        let mut found: Vec<(String, &'v Value)> = object
            .iter()
            .filter(|(key, _)| same_name(key, name))
            .map(|(key, value)| (format!("{path}.{key}"), value))
            .collect();
        found.sort_by_key(|(at, _)| self.spans.get(at).map_or(0, |span| span.0));
        found
    }

    /// The exact text of the value at `path`, as the client sent it.
    pub fn raw_text(&self, path: &str) -> Option<&'a str> {
        let &(start, end) = self.spans.get(path)?;
        std::str::from_utf8(&self.raw[start..end]).ok()
    }

    /// Where the reader stands when it rejects the value: after the opening bracket of an object
    /// or array, after the whole token otherwise.
    fn position_of(&self, path: &str) -> (usize, usize) {
        let Some(&(start, end)) = self.spans.get(path) else { return (0, 0) };
        let at = if matches!(self.raw.get(start), Some(b'{' | b'[')) { start + 1 } else { end };
        let before = &self.raw[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        (line, at - line_start)
    }
}

/// `StringComparer.OrdinalIgnoreCase`: each character compared by its simple (one-character)
/// upper-case mapping, as .NET's invariant `ToUpper` does.
fn same_name(a: &str, b: &str) -> bool {
    fn upper(c: char) -> char {
        let mut mapped = c.to_uppercase();
        match (mapped.next(), mapped.next()) {
            (Some(single), None) => single,
            _ => c,
        }
    }
    a.chars().count() == b.chars().count() && a.chars().zip(b.chars()).all(|(x, y)| upper(x) == upper(y))
}

/// An `Int32` the way System.Text.Json reads one with `NumberHandling.AllowReadingFromString`:
/// a JSON integer, or a string holding exactly an integer (optional sign, digits, nothing
/// around them); anything else, or out of range, is a conversion error (`None`).
pub fn int32(value: &Value) -> Option<i32> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(text) => {
            let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse::<i32>().ok()
        }
        _ => None,
    }
}

/// ASP.NET Core matches route templates case-insensitively and ignores a trailing slash, so
/// seed 001's clients may call `POST /user` or `GET /USER/2072/`. Such paths are rewritten to
/// the template's spelling before routing; the other surfaces' paths are left as they are.
pub fn seed_001_routes(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    if let Some(path) = seed_001_path(uri.path()) {
        let rewritten = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        if let Ok(rewritten) = rewritten.parse() {
            *request.uri_mut() = rewritten;
        }
    }
    request
}

/// `/User` and `/User/{id}` in any case, with or without a trailing slash, in the template's
/// spelling; `None` when `path` is not one of them or is already spelled so.
fn seed_001_path(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    if bytes.len() < 5 || !bytes[..5].eq_ignore_ascii_case(b"/user") {
        return None;
    }
    let rest = &path[5..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None; // `/users/…` is seed 002's
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let canonical = format!("/User{rest}");
    (canonical != path).then_some(canonical)
}

fn syntax_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // Drop serde_json's own " at line X column Y" suffix; the position is reported separately.
    text.split(" at line ").next().unwrap_or(&text).to_owned()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn string_end(b: &[u8], mut i: usize) -> usize {
    i += 1; // opening quote
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Records the span of the value starting at `i` (and of every value inside it); returns its end.
/// Only called on input serde_json has accepted, so the grammar is known to be right.
fn scan(b: &[u8], i: usize, path: &str, spans: &mut HashMap<String, (usize, usize)>) -> usize {
    let start = skip_ws(b, i);
    let mut i = start;
    match b.get(i) {
        Some(b'{') => {
            i = skip_ws(b, i + 1);
            if b.get(i) == Some(&b'}') {
                i += 1;
            } else {
                loop {
                    let key_start = skip_ws(b, i);
                    let key_end = string_end(b, key_start);
                    let key: String = serde_json::from_slice(&b[key_start..key_end]).unwrap_or_default();
                    i = skip_ws(b, key_end) + 1; // ':'
                    i = skip_ws(b, scan(b, i, &format!("{path}.{key}"), spans));
                    let delimiter = b.get(i).copied();
                    i += 1;
                    if delimiter != Some(b',') {
                        break;
                    }
                }
            }
        }
        Some(b'[') => {
            i = skip_ws(b, i + 1);
            if b.get(i) == Some(&b']') {
                i += 1;
            } else {
                let mut index = 0;
                loop {
                    i = skip_ws(b, scan(b, i, &format!("{path}[{index}]"), spans));
                    index += 1;
                    let delimiter = b.get(i).copied();
                    i += 1;
                    if delimiter != Some(b',') {
                        break;
                    }
                }
            }
        }
        Some(b'"') => i = string_end(b, i),
        Some(_) => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        None => {}
    }
    spans.insert(path.to_owned(), (start, i));
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_match_system_text_json() {
        let body = JsonBody::parse(br#"{"merchantId":"abc"}"#).unwrap();
        assert_eq!(
            body.conversion_error("$.merchantId", "System.Int32"),
            "The JSON value could not be converted to System.Int32. Path: $.merchantId | LineNumber: 0 | BytePositionInLine: 19."
        );
        let body = JsonBody::parse(b"{\n  \"merchantId\": 1,\n  \"additionalData\": []\n}").unwrap();
        assert!(body.conversion_error("$.additionalData", "X").ends_with("LineNumber: 2 | BytePositionInLine: 21."));
    }

    #[test]
    fn properties_bind_case_insensitively_and_the_last_spelling_wins() {
        let body = JsonBody::parse(br#"{"MERCHANTID": 1, "email": "a@b.c", "merchantId": 2}"#).unwrap();
        let fields = body.value.as_object().unwrap();
        let (path, value) = body.property(fields, "$", "merchantId").unwrap();
        assert_eq!((path.as_str(), value), ("$.merchantId", &Value::from(2)));
        let body = JsonBody::parse(br#"{"merchantId": 2, "MerchantId": 3}"#).unwrap();
        let fields = body.value.as_object().unwrap();
        assert_eq!(body.property(fields, "$", "merchantid").unwrap().0, "$.MerchantId");
        assert!(body.property(fields, "$", "merchant").is_none());
        let spellings: Vec<String> = body.properties(fields, "$", "MERCHANTID").into_iter().map(|(at, _)| at).collect();
        assert_eq!(spellings, ["$.merchantId", "$.MerchantId"]);
        assert!(same_name("EMAIL", "email") && !same_name("emails", "email"));
    }

    #[test]
    fn int32_reads_numbers_and_numeric_strings_only() {
        for (value, expected) in [
            (serde_json::json!(9101), Some(9101)),
            (serde_json::json!("9101"), Some(9101)),
            (serde_json::json!("-5"), Some(-5)),
            (serde_json::json!("+7"), Some(7)),
            (serde_json::json!("007"), Some(7)),
            (serde_json::json!(" 9101"), None),
            (serde_json::json!("9101 "), None),
            (serde_json::json!("9101.0"), None),
            (serde_json::json!("1e3"), None),
            (serde_json::json!("abc"), None),
            (serde_json::json!(""), None),
            (serde_json::json!("-"), None),
            (serde_json::json!("2147483648"), None),
            (serde_json::json!(9101.5), None),
            (serde_json::json!(true), None),
        ] {
            assert_eq!(int32(&value), expected, "{value}");
        }
    }

    #[test]
    fn seed_001_routes_are_spelled_as_the_template() {
        assert_eq!(seed_001_path("/user").as_deref(), Some("/User"));
        assert_eq!(seed_001_path("/USER/2072").as_deref(), Some("/User/2072"));
        assert_eq!(seed_001_path("/User/").as_deref(), Some("/User"));
        assert_eq!(seed_001_path("/user/2072/").as_deref(), Some("/User/2072"));
        for untouched in ["/User", "/User/2072", "/users/usr:1", "/Users", "/userinfo", "/", "/u"] {
            assert_eq!(seed_001_path(untouched), None, "{untouched}");
        }
    }

    #[test]
    fn raw_text_is_exact() {
        let body = JsonBody::parse(br#"{"a": {"type" : "x",  "data":{"k":[1, "}"]}} , "b":"\"q\""}"#).unwrap();
        assert_eq!(body.raw_text("$.a"), Some(r#"{"type" : "x",  "data":{"k":[1, "}"]}}"#));
        assert_eq!(body.raw_text("$.a.data.k[1]"), Some(r#""}""#));
        assert_eq!(body.raw_text("$.b"), Some(r#""\"q\"""#));
    }

    #[test]
    fn empty_and_broken_bodies() {
        let empty = JsonBody::parse(b"  ").err().unwrap();
        assert_eq!(serde_json::to_string(&empty).unwrap(), r#"{"":["A non-empty request body is required."]}"#);
        let broken = JsonBody::parse(b"{\"merchantId\": ").err().unwrap();
        let text = serde_json::to_string(&broken).unwrap();
        assert!(text.starts_with(r#"{"$":["The JSON payload is invalid: "#), "{text}");
    }

    #[test]
    fn errors_keep_insertion_order() {
        let mut errors = ValidationErrors::default();
        errors.add("Email", "The Email field is required.");
        errors.add("MerchantId", "x");
        errors.add("Email", "Email address is required");
        assert_eq!(
            serde_json::to_string(&errors).unwrap(),
            r#"{"Email":["The Email field is required.","Email address is required"],"MerchantId":["x"]}"#
        );
    }
}
