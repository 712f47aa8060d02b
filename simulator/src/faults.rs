//! Fault rules: failures a test asks for, applied to chosen requests of an endpoint.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::ControlError;
use crate::responses::{ErrorStyle, HttpResponse, retry_after};
use crate::routes::RouteKind;
use crate::server::ResponseBody;

/// What goes wrong. JSON: `{"kind": "...", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// That status with the endpoint's error body.
    Status {
        status: u16,
        /// Default: the code the service sends with that status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// 429 with `Retry-After` in seconds, or as an HTTP date.
    RateLimit {
        retry_after_secs: u64,
        #[serde(default)]
        http_date: bool,
    },
    /// Close the connection without an answer.
    Drop,
    /// Answer normally after this many real milliseconds.
    Delay { ms: u64 },
    /// Download: announce the full length, then abort the connection after this many body bytes.
    CutAfter { bytes: u64 },
    /// Download: announce the full length, send this many body bytes, end the response there.
    ShortBody { bytes: u64 },
    /// Download: flip every bit of the byte at this package offset (when the response holds it).
    CorruptByte { offset: u64 },
    /// Download: send `after_bytes` body bytes, nothing for `ms` real milliseconds, then the rest.
    Stall { after_bytes: u64, ms: u64 },
    /// Download: send at most this many bytes a second.
    SlowBody { bytes_per_sec: u64 },
    /// Download: 403, as for an expired link.
    ExpiredLink,
    /// Download: ignore `Range` and leave out `Accept-Ranges`.
    NoRanges,
    /// Download: no `Content-Length`, the body chunked, as a proxy that re-encodes it may send it.
    NoLength,
    /// 404 with the endpoint's error body.
    NotFound,
    /// This answer instead of the endpoint's, exactly as given: a server that misbehaves. A
    /// redirect (`status` 307, `headers` `{"location": "..."}`), a token that never expires, a
    /// `Retry-After` of `u64::MAX`, a link with user information, control characters in a
    /// message. A `body` without `content-type` in `headers` is sent as JSON.
    Answer {
        status: u16,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        body: String,
    },
    /// Lists: a page of `items` copies of `item` (JSON text, put in as it is), whatever `$top`
    /// asked for, with an `@odata.nextLink` to the next `$skip`: with `times` 0, a list that
    /// never ends.
    Page {
        items: u64,
        #[serde(default = "empty_object")]
        item: String,
    },
    /// These bytes, exactly as written, as the whole answer (status line, headers, body), then
    /// the connection closes: an answer no HTTP library sends, such as a `Content-Length` that is
    /// not a number, or one beside `Transfer-Encoding`.
    Raw { response: String },
}

fn empty_object() -> String {
    "{}".to_owned()
}

impl Fault {
    fn download_only(&self) -> bool {
        matches!(
            self,
            Fault::CutAfter { .. }
                | Fault::ShortBody { .. }
                | Fault::CorruptByte { .. }
                | Fault::Stall { .. }
                | Fault::SlowBody { .. }
                | Fault::ExpiredLink
                | Fault::NoRanges
                | Fault::NoLength
        )
    }

    fn validate(&self, endpoint: RouteKind) -> Result<(), ControlError> {
        if self.download_only() && endpoint != RouteKind::Download {
            return Err(ControlError::invalid(format!(
                "fault {self:?} only applies to the download endpoint, not {endpoint:?}"
            )));
        }
        match self {
            Fault::Status { status, .. } if !(400..=599).contains(status) => {
                Err(ControlError::invalid(format!("fault status must be 400 to 599, not {status}")))
            }
            Fault::SlowBody { bytes_per_sec: 0 } => {
                Err(ControlError::invalid("slow_body needs bytes_per_sec of at least 1"))
            }
            Fault::Page { .. } if !matches!(endpoint, RouteKind::ListMachines | RouteKind::ListActions) => {
                Err(ControlError::invalid(format!(
                    "fault page only applies to list_machines and list_actions, not {endpoint:?}"
                )))
            }
            Fault::Raw { response } if response.is_empty() => Err(ControlError::invalid("raw needs a response")),
            Fault::Answer { status, .. } if !(200..=599).contains(status) => {
                Err(ControlError::invalid(format!("answer status must be 200 to 599, not {status}")))
            }
            Fault::Answer { headers, .. } => headers.iter().try_for_each(|(name, value)| {
                let valid = HeaderName::from_bytes(name.as_bytes()).is_ok() && HeaderValue::from_str(value).is_ok();
                if valid {
                    Ok(())
                } else {
                    Err(ControlError::invalid(format!("answer header {name:?}: {value:?} is not valid HTTP")))
                }
            }),
            _ => Ok(()),
        }
    }

    /// The answer that replaces the normal one, for the faults that replace it with an error.
    pub(crate) fn error_answer(&self, style: ErrorStyle) -> Option<HttpResponse> {
        let (status, code, message, retry_after_value) = match self {
            Fault::Answer { status, headers, body } => return Some(given_answer(*status, headers, body)),
            Fault::Status { status, code, retry_after_secs } => {
                let status = StatusCode::from_u16(*status).expect("validated when added");
                let code = code.clone().unwrap_or_else(|| style.default_code(status).to_owned());
                let retry = retry_after_secs.map(|seconds| retry_after(seconds, false));
                (status, code, format!("Simulated fault: {status}."), retry)
            }
            Fault::RateLimit { retry_after_secs, http_date } => {
                let status = StatusCode::TOO_MANY_REQUESTS;
                (
                    status,
                    style.default_code(status).to_owned(),
                    format!("Rate limit is exceeded. Try again in {retry_after_secs} seconds."),
                    Some(retry_after(*retry_after_secs, *http_date)),
                )
            }
            Fault::NotFound => {
                let status = StatusCode::NOT_FOUND;
                (
                    status,
                    style.default_code(status).to_owned(),
                    "The specified resource does not exist.".to_owned(),
                    None,
                )
            }
            _ => return None,
        };
        let mut response = style.error(status, &code, &message);
        if let Some(value) = retry_after_value {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        Some(response)
    }
}

/// The `answer` fault's response (validated when the rule was added).
fn given_answer(status: u16, headers: &BTreeMap<String, String>, body: &str) -> HttpResponse {
    let has_body = !body.is_empty();
    let bytes = Bytes::from(body.to_owned());
    let length_set = headers.keys().any(|name| name.eq_ignore_ascii_case("content-length"));
    let body = if length_set { ResponseBody::full_with_length_as_set(bytes) } else { ResponseBody::full(bytes) };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("validated when added");
    if has_body {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    }
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("validated when added");
        response.headers_mut().insert(name, HeaderValue::from_str(value).expect("validated when added"));
    }
    response
}

/// `POST /_sim/faults`: apply `fault` to the (`after`+1)-th to (`after`+`times`)-th requests
/// that match `endpoint` (and `action_id` / `client_id` when given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub endpoint: RouteKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Matching requests to let through first.
    #[serde(default)]
    pub after: u64,
    /// How many requests get the fault; 0 means all from then on.
    #[serde(default = "one")]
    pub times: u64,
    pub fault: Fault,
}

fn one() -> u64 {
    1
}

impl FaultRule {
    /// A rule for the next request to `endpoint`.
    pub fn new(endpoint: RouteKind, fault: Fault) -> FaultRule {
        FaultRule { endpoint, action_id: None, client_id: None, after: 0, times: 1, fault }
    }
}

/// What fault rules match a request on.
pub(crate) struct RequestKey<'a> {
    pub(crate) endpoint: RouteKind,
    pub(crate) action_id: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
}

struct ActiveRule {
    rule: FaultRule,
    /// Matching requests let through so far (up to `after`).
    passed: u64,
    /// Requests this rule's fault applied to.
    applied: u64,
}

impl ActiveRule {
    fn matches(&self, request: &RequestKey) -> bool {
        let filter = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| Some(wanted) == actual)
        };
        self.rule.endpoint == request.endpoint
            && filter(&self.rule.action_id, request.action_id)
            && filter(&self.rule.client_id, request.client_id)
    }

    fn has_uses_left(&self) -> bool {
        self.rule.times == 0 || self.applied < self.rule.times
    }
}

#[derive(Default)]
pub(crate) struct FaultRules {
    last_id: u64,
    rules: Vec<ActiveRule>,
}

impl FaultRules {
    pub(crate) fn add(&mut self, rule: FaultRule) -> Result<u64, ControlError> {
        rule.fault.validate(rule.endpoint)?;
        self.last_id += 1;
        self.rules.push(ActiveRule { rule, passed: 0, applied: 0 });
        Ok(self.last_id)
    }

    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for this request, if any. Every matching rule counts the request towards its
    /// `after`, whether or not another rule applies to it; of the rules whose turn has come, the
    /// first (in the order they were added) with uses left applies and uses one.
    pub(crate) fn pick(&mut self, request: &RequestKey) -> Option<Fault> {
        let mut picked = None;
        for active in &mut self.rules {
            if !active.matches(request) {
                continue;
            }
            if active.passed < active.rule.after {
                active.passed += 1;
            } else if picked.is_none() && active.has_uses_left() {
                active.applied += 1;
                picked = Some(active.rule.fault.clone());
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(endpoint: RouteKind) -> RequestKey<'static> {
        RequestKey { endpoint, action_id: None, client_id: None }
    }

    #[test]
    fn after_and_times_pick_a_window_of_matching_requests() {
        let mut rules = FaultRules::default();
        rules.add(FaultRule { after: 1, times: 2, ..FaultRule::new(RouteKind::Token, Fault::Drop) }).unwrap();
        let picks: Vec<bool> = (0..5).map(|_| rules.pick(&key(RouteKind::Token)).is_some()).collect();
        assert_eq!(picks, [false, true, true, false, false]);
        assert!(rules.pick(&key(RouteKind::Imds)).is_none());
    }

    #[test]
    fn stacked_rules_apply_one_after_the_other() {
        let mut rules = FaultRules::default();
        rules.add(FaultRule::new(RouteKind::Collect, Fault::NotFound)).unwrap();
        rules.add(FaultRule::new(RouteKind::Collect, Fault::Drop)).unwrap();
        assert_eq!(rules.pick(&key(RouteKind::Collect)), Some(Fault::NotFound));
        assert_eq!(rules.pick(&key(RouteKind::Collect)), Some(Fault::Drop));
        assert_eq!(rules.pick(&key(RouteKind::Collect)), None);
    }

    #[test]
    fn times_zero_means_forever_and_filters_narrow_the_match() {
        let mut rules = FaultRules::default();
        rules
            .add(FaultRule {
                action_id: Some("a".into()),
                times: 0,
                ..FaultRule::new(RouteKind::GetPackageUri, Fault::NotFound)
            })
            .unwrap();
        let for_action =
            |action_id| RequestKey { endpoint: RouteKind::GetPackageUri, action_id: Some(action_id), client_id: None };
        for _ in 0..10 {
            assert!(rules.pick(&for_action("a")).is_some());
        }
        assert!(rules.pick(&for_action("b")).is_none());
    }

    #[test]
    fn download_faults_are_refused_elsewhere() {
        let mut rules = FaultRules::default();
        let cut = FaultRule::new(RouteKind::Token, Fault::CutAfter { bytes: 1 });
        assert!(rules.add(cut).is_err());
        let parsed: FaultRule =
            serde_json::from_str(r#"{"endpoint":"download","fault":{"kind":"stall","after_bytes":10,"ms":5}}"#)
                .unwrap();
        assert_eq!(parsed.times, 1);
        assert_eq!(rules.add(parsed).unwrap(), 1);
        assert!(
            serde_json::from_str::<Fault>(r#"{"kind":"delay","ms":1,"extra":1}"#).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn answers_are_served_as_given_and_refused_when_not_valid_http() {
        let mut rules = FaultRules::default();
        let redirect: FaultRule = serde_json::from_str(
            r#"{"endpoint":"token","fault":{"kind":"answer","status":307,"headers":{"location":"http://127.0.0.2:1/x"}}}"#,
        )
        .unwrap();
        rules.add(redirect.clone()).unwrap();
        let response = redirect.fault.error_answer(ErrorStyle::SignIn).unwrap();
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(response.headers()["location"], "http://127.0.0.2:1/x");
        for bad in [
            Fault::Answer { status: 100, headers: BTreeMap::new(), body: String::new() },
            Fault::Answer { status: 200, headers: [("bad name".into(), "x".into())].into(), body: String::new() },
            Fault::Answer { status: 200, headers: [("x-a".into(), "\u{1b}".into())].into(), body: String::new() },
        ] {
            assert!(rules.add(FaultRule::new(RouteKind::Token, bad)).is_err());
        }
    }
}
