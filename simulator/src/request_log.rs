//! The request log: what the simulator was asked and what it answered, so a test can check how
//! the library behaved. It never holds a secret: header names without values, queries with
//! secret values replaced, assertion claims without the signature, no bodies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::faults::Fault;
use crate::lock;
use crate::routes::RouteKind;

/// The log keeps this many of the most recent requests.
const MAX_RECORDS: usize = 100_000;

/// Query parameters whose values are secrets.
const SECRET_PARAMETERS: [&str; 4] = ["token", "sig", "client_secret", "client_assertion"];

/// One request, as `GET /_sim/requests` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// 1, 2, 3, ... in the order the simulator answered; never reused, not even after a reset.
    pub seq: u64,
    /// Simulated milliseconds since the simulator started, when the request arrived.
    pub time_ms: u64,
    pub port: Port,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query with every secret value replaced by `REDACTED`.
    pub query: Option<String>,
    /// `None` for paths the simulator does not serve.
    pub endpoint: Option<RouteKind>,
    /// Lower-case names of the request headers that were present, never their values.
    pub headers: Vec<String>,
    /// `None` when a fault dropped the connection without an answer.
    pub status: Option<u16>,
    pub action_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// How a sign-in request authenticated.
    pub credential: Option<Credential>,
    /// The fault that applied to this request.
    pub fault: Option<Fault>,
    /// The `Range` header of a download.
    pub range: Option<String>,
    /// Body bytes handed to the connection so far.
    pub body_bytes: u64,
    /// For client assertions: the decoded header and claims, also when verification failed.
    pub claims: Option<AssertionClaims>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    Api,
    Download,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    Secret,
    Assertion,
    Imds,
    AppService,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub x5t: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub jti: Option<String>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// `GET /_sim/requests?endpoint=E&action_id=A`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFilter {
    #[serde(default)]
    pub endpoint: Option<RouteKind>,
    #[serde(default)]
    pub action_id: Option<String>,
}

impl RequestFilter {
    pub fn matches(&self, record: &RequestRecord) -> bool {
        self.endpoint.is_none_or(|endpoint| record.endpoint == Some(endpoint))
            && self.action_id.as_ref().is_none_or(|action_id| record.action_id.as_ref() == Some(action_id))
    }
}

/// Counts the body bytes of one response as they are handed to the connection; the log reads
/// it whenever it is asked, so a download in progress shows how far it got.
#[derive(Clone, Default)]
pub(crate) struct SentBytes(Arc<AtomicU64>);

impl SentBytes {
    pub(crate) fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct RequestLog {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    last_seq: u64,
    records: VecDeque<(RequestRecord, SentBytes)>,
}

impl RequestLog {
    pub(crate) fn record(&self, mut record: RequestRecord, sent: SentBytes) {
        let mut entries = lock(&self.inner);
        entries.last_seq += 1;
        record.seq = entries.last_seq;
        if entries.records.len() == MAX_RECORDS {
            entries.records.pop_front();
        }
        entries.records.push_back((record, sent));
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        lock(&self.inner)
            .records
            .iter()
            .map(|(record, sent)| RequestRecord { body_bytes: sent.get(), ..record.clone() })
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.inner).records.clear();
    }
}

/// `query` with the value of every secret parameter replaced by `REDACTED`; everything else as
/// it was sent.
pub(crate) fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
            if SECRET_PARAMETERS.contains(&decoded.as_ref()) { format!("{name}=REDACTED") } else { pair.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn header_names(headers: &HeaderMap) -> Vec<String> {
    headers.keys().map(|name| name.as_str().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_query("token=abc%2Bdef&x=1&sig=s&client_secret=p&client_assertion=j&resource=r"),
            "token=REDACTED&x=1&sig=REDACTED&client_secret=REDACTED&client_assertion=REDACTED&resource=r"
        );
        assert_eq!(redact_query("%74oken=abc"), "%74oken=REDACTED");
    }
}
