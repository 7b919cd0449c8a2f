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
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationProblemDetails<'a> {
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
