//! Building answers: JSON, and errors in the shape each service sends them.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::server::ResponseBody;

pub(crate) type HttpResponse = Response<ResponseBody>;

/// The error body shapes of the simulated services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorStyle {
    /// Defender API: `{"error":{"code","message","target"}}`.
    Api,
    /// Entra ID token endpoint: `{"error","error_description","error_codes",...}`.
    SignIn,
    /// IMDS and App Service identity: `{"error","error_description"}`.
    ManagedIdentity,
    /// Azure Storage, which serves the downloads: `<Error><Code>...`.
    Storage,
}

impl ErrorStyle {
    pub(crate) fn error(self, status: StatusCode, code: &str, message: &str) -> HttpResponse {
        match self {
            ErrorStyle::Api => api_error(status, code, message),
            ErrorStyle::SignIn => {
                // AADSTS90033 is Entra's "transient error"; 50000 its generic token error.
                let aadsts = if is_transient(status) { 90033 } else { 50000 };
                sign_in_error(status, code, aadsts, message)
            }
            ErrorStyle::ManagedIdentity => managed_identity_error(status, code, message),
            ErrorStyle::Storage => storage_error(status, code, message, None),
        }
    }

    /// The `code` (or OAuth `error`) this service would send with `status`.
    pub(crate) fn default_code(self, status: StatusCode) -> &'static str {
        match self {
            ErrorStyle::Api | ErrorStyle::Storage => match status {
                StatusCode::BAD_REQUEST => "BadRequest",
                StatusCode::UNAUTHORIZED => "Unauthorized",
                StatusCode::FORBIDDEN => "Forbidden",
                StatusCode::NOT_FOUND => "ResourceNotFound",
                StatusCode::CONFLICT => "Conflict",
                StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
                StatusCode::INTERNAL_SERVER_ERROR => "InternalServerError",
                StatusCode::BAD_GATEWAY => "BadGateway",
                StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
                StatusCode::GATEWAY_TIMEOUT => "GatewayTimeout",
                _ if status.is_server_error() => "InternalServerError",
                _ => "BadRequest",
            },
            ErrorStyle::SignIn | ErrorStyle::ManagedIdentity => {
                if is_transient(status) {
                    "temporarily_unavailable"
                } else {
                    "invalid_request"
                }
            }
        }
    }
}

fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    let body = serde_json::to_vec(value).expect("simulator answers serialize");
    with_body(status, "application/json; charset=utf-8", body)
}

pub(crate) fn no_content() -> HttpResponse {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub(crate) fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A new correlation id (error `target`, trace ids, storage request ids).
pub(crate) fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn api_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json(status, &json!({"error": {"code": code, "message": message, "target": correlation_id()}}))
}

/// An Entra ID token endpoint error: `error` is the OAuth error, `aadsts` the AADSTS number that
/// starts the description.
pub(crate) fn sign_in_error(status: StatusCode, error: &str, aadsts: u32, description: &str) -> HttpResponse {
    let trace_id = correlation_id();
    let correlation_id = correlation_id();
    let timestamp = DateTime::<Utc>::from(SystemTime::now()).format("%Y-%m-%d %H:%M:%SZ").to_string();
    json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"),
            "error_codes": [aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={aadsts}"),
        }),
    )
}

pub(crate) fn managed_identity_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    json(status, &json!({"error": error, "error_description": description}))
}

/// An Azure Storage error, with `x-ms-error-code` as Storage sends it.
pub(crate) fn storage_error(status: StatusCode, code: &str, message: &str, detail: Option<&str>) -> HttpResponse {
    let request_id = correlation_id();
    let time = iso_timestamp(SystemTime::now());
    let detail = detail
        .map(|detail| format!("<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>", xml_escape(detail)))
        .unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}\nRequestId:{request_id}\nTime:{time}</Message>{detail}</Error>",
        xml_escape(code),
        xml_escape(message),
    );
    let mut response = with_body(status, "application/xml", body.into_bytes());
    let headers = response.headers_mut();
    if let Ok(code) = HeaderValue::from_str(code) {
        headers.insert("x-ms-error-code", code);
    }
    headers.insert("x-ms-request-id", HeaderValue::from_str(&request_id).expect("a GUID is a valid header value"));
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `2024-01-02T03:04:05.1234567Z`, the service's timestamp format.
pub(crate) fn iso_timestamp(time: SystemTime) -> String {
    let time = DateTime::<Utc>::from(time);
    format!("{}.{:07}Z", time.format("%Y-%m-%dT%H:%M:%S"), time.timestamp_subsec_nanos() / 100)
}

/// `Tue, 15 Nov 1994 08:12:31 GMT`.
pub(crate) fn http_date(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// A `Retry-After` value: seconds, or the HTTP date that many seconds from now (rounded up to
/// the next whole second, so the date never asks for less than the seconds would).
pub(crate) fn retry_after(seconds: u64, as_http_date: bool) -> HeaderValue {
    let value = if as_http_date {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 1 + seconds))
    } else {
        seconds.to_string()
    };
    HeaderValue::from_str(&value).expect("digits and dates are valid header values")
}
