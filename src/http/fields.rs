//! Reading JSON bodies field by field, so one 400 lists every problem of a request.

use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};

/// The body as a JSON object, or 400.
pub fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::MalformedBody("The body must be a JSON object.".into())),
    }
}

/// Collects every problem, so one answer lists them all.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    /// A string field: `None` when absent or null (recorded as a problem when `required`).
    pub fn string<'a>(&mut self, body: &'a Map<String, Value>, field: &str, required: bool) -> Option<&'a str> {
        let value = self.optional_string(body, field)?;
        if value.is_none() && required {
            self.add(field, "is required");
        }
        value
    }

    /// An optional string field: `Some(None)` when absent or null, `None` when it is not a
    /// string (recorded as a problem).
    pub fn optional_string<'a>(&mut self, body: &'a Map<String, Value>, field: &str) -> Option<Option<&'a str>> {
        match body.get(field) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(_) => {
                self.add(field, "must be a string");
                None
            }
        }
    }

    /// Applies a parser to an optional string field, recording its error.
    pub fn parse<T, E: std::fmt::Display>(
        &mut self,
        body: &Map<String, Value>,
        field: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.string(body, field, required)?;
        parse(raw).map_err(|e| self.add(field, e.to_string())).ok()
    }

    /// Refuses members that are not fields of the request (a typo must not pass silently).
    pub fn unknown_fields(&mut self, body: &Map<String, Value>, fields: &[&str]) {
        for key in body.keys().filter(|k| !fields.contains(&k.as_str())) {
            self.add(key, format!("is not a field of this request (fields: {})", fields.join(", ")));
        }
    }
}
