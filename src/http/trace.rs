//! W3C trace context for every request, plus the request log line and the HTTP metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace this request belongs to and the span id this server gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl TraceContext {
    fn random() -> Self {
        let mut ctx = Self { trace_id: [0; 16], span_id: [0; 8] };
        let mut rng = rand::rng();
        rng.fill_bytes(&mut ctx.trace_id);
        rng.fill_bytes(&mut ctx.span_id);
        ctx
    }

    /// Continues the caller's trace when `traceparent` is valid, else starts one.
    pub fn from_traceparent(header: Option<&str>) -> Self {
        let mut ctx = Self::random();
        if let Some(trace_id) = header.and_then(parse_traceparent) {
            ctx.trace_id = trace_id;
        }
        ctx
    }

    /// The context of the request being served, or a fresh one outside a request.
    pub fn current() -> Self {
        CURRENT.try_with(|ctx| *ctx).unwrap_or_else(|_| Self::random())
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// `00-<trace id>-<span id>-00`, the form ASP.NET puts in `traceId` and seed 001 shows.
    pub fn trace_id_field(&self) -> String {
        format!("00-{}-{}-00", hex(&self.trace_id), hex(&self.span_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context §3.2); returns the trace id.
pub(super) fn parse_traceparent(value: &str) -> Option<[u8; 16]> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = unhex::<16>(parts.next()?)?;
    let parent_id = unhex::<8>(parts.next()?)?;
    let flags = parts.next()?;
    let valid = unhex::<1>(version).is_some_and(|v| v[0] != 0xff)
        && unhex::<1>(flags).is_some()
        && (version != "00" || parts.next().is_none())
        && trace_id != [0; 16]
        && parent_id != [0; 8];
    valid.then_some(trace_id)
}

/// Outermost middleware: sets the trace context for everything below, then logs and counts.
pub async fn observe(request: Request, next: Next) -> Response {
    let ctx = TraceContext::from_traceparent(request.headers().get("traceparent").and_then(|v| v.to_str().ok()));
    // The route template, never the raw path: paths may carry ids or e-mails.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let started = Instant::now();

    let mut response = CURRENT.scope(ctx, next.run(request)).await;

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&ctx.trace_id_field()) {
        response.headers_mut().insert("traceresponse", value);
    }
    let labels = [("method", method.to_string()), ("route", route.clone()), ("status", status.to_string())];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    tracing::info!(
        trace_id = %ctx.trace_id_hex(),
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_traceparent() {
        let ctx = TraceContext::from_traceparent(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let field = ctx.trace_id_field();
        assert!(field.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(field.ends_with("-00"));
        assert_eq!(field.len(), 55);
    }

    #[test]
    fn ignores_invalid_traceparents() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        // A future version may append fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }
}
