//! Azure Blob storage, where live response results are kept: the real Blob REST API (Azurite,
//! the Azure Storage emulator, in the tests), written with Shared Key authentication and read
//! through service SAS links, as the real service hands them out.
//!
//! Only what the simulator needs: create the container, put a blob (Put Blob for small ones,
//! Put Block + Put Block List for large ones, with the blob's Content-Type, Content-Encoding
//! and Content-MD5 set), and sign a read-only SAS link to it that expires.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The emulator's well-known account, as Azurite and the Azure SDKs document it: a published
/// constant, not a secret.
pub const DEVSTORE_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (published by Microsoft; not a secret).
pub const DEVSTORE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The Blob REST API version of every request and SAS link.
const VERSION: &str = "2023-11-03";
/// Where results go.
const CONTAINER: &str = "live-response-results";
/// Blobs up to this size go in one Put Blob; larger ones in blocks of this size.
pub(crate) const BLOCK: usize = 8 << 20;

/// Characters a query value keeps as they are (RFC 3986 unreserved); `+`, `/` and `=` of a
/// signature are encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A blob's properties, set when it is written.
pub(crate) struct BlobProperties<'a> {
    pub content_type: &'a str,
    pub content_encoding: Option<&'a str>,
}

pub(crate) struct BlobStore {
    /// `http://127.0.0.1:10000/devstoreaccount1`: the account's root, without a trailing slash.
    endpoint: String,
    /// The path of `endpoint` (`/devstoreaccount1` for the emulator's path-style URLs).
    endpoint_path: String,
    account: String,
    key: Vec<u8>,
    http: reqwest::Client,
    container: tokio::sync::OnceCell<()>,
}

impl BlobStore {
    /// The store at `endpoint`, an account's blob root (`http://127.0.0.1:10000/devstoreaccount1`
    /// for Azurite), whose last path segment or first host label is the account name; signed
    /// with the emulator's well-known key.
    pub(crate) fn new(endpoint: &str) -> Result<BlobStore, String> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let url = url_parts(&endpoint).ok_or_else(|| {
            format!(
                "the blob endpoint '{endpoint}' is not an http(s) URL such as http://127.0.0.1:10000/devstoreaccount1"
            )
        })?;
        let account = match url.path.rsplit('/').find(|segment| !segment.is_empty()) {
            Some(account) => account.to_owned(),
            None => url.host.split('.').next().unwrap_or_default().to_owned(),
        };
        if account.is_empty() {
            return Err(format!("the blob endpoint '{endpoint}' names no storage account"));
        }
        let key = BASE64.decode(DEVSTORE_KEY).expect("the well-known key is base64");
        // Built in one workspace with the library, reqwest has rustls without a crypto provider
        // (the store is plain http, but the client is set up with TLS all the same): ring's,
        // the simulator's own, unless the process chose one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|error| format!("cannot set up HTTP for the blob store: {error}"))?;
        Ok(BlobStore { endpoint_path: url.path, endpoint, account, key, http, container: tokio::sync::OnceCell::new() })
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Writes blob `name` (path segments of URL-safe characters) from `blocks`, `size` bytes in
    /// all: one Put Blob when it is a single block, else a Put Block each and a Put Block List
    /// that sets the blob's MD5 (the store computes none for a block list).
    pub(crate) async fn put(
        &self,
        name: &str,
        size: u64,
        mut blocks: impl Iterator<Item = Vec<u8>> + Send,
        properties: BlobProperties<'_>,
    ) -> Result<(), String> {
        self.ensure_container().await?;
        let path = format!("/{CONTAINER}/{name}");
        if size <= BLOCK as u64 {
            let body: Vec<u8> = blocks.by_ref().flatten().collect();
            let md5 = BASE64.encode(Md5::digest(&body));
            // The blob's properties, not the request's: a request Content-Encoding would say the
            // body on the wire is compressed, and the store would not keep it as the blob's.
            let mut headers = vec![
                ("Content-MD5", md5),
                ("x-ms-blob-type", "BlockBlob".to_owned()),
                ("x-ms-blob-content-type", properties.content_type.to_owned()),
            ];
            if let Some(encoding) = properties.content_encoding {
                headers.push(("x-ms-blob-content-encoding", encoding.to_owned()));
            }
            return self.send(reqwest::Method::PUT, &path, &[], headers, body).await;
        }
        let mut md5 = Md5::new();
        let mut ids = Vec::new();
        for (number, block) in blocks.enumerate() {
            md5.update(&block);
            let id = BASE64.encode(format!("block-{number:08}"));
            self.send(reqwest::Method::PUT, &path, &[("comp", "block"), ("blockid", &id)], Vec::new(), block).await?;
            ids.push(id);
        }
        let list: String = ids.iter().map(|id| format!("<Latest>{id}</Latest>")).collect();
        let body = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{list}</BlockList>").into_bytes();
        let mut headers = vec![
            ("Content-Type", "application/xml".to_owned()),
            ("x-ms-blob-content-type", properties.content_type.to_owned()),
            ("x-ms-blob-content-md5", BASE64.encode(md5.finalize())),
        ];
        if let Some(encoding) = properties.content_encoding {
            headers.push(("x-ms-blob-content-encoding", encoding.to_owned()));
        }
        self.send(reqwest::Method::PUT, &path, &[("comp", "blocklist")], headers, body).await
    }

    /// A service SAS link that reads blob `name` until `ttl` from now: `sv`, `sr=b`, `sp=r`,
    /// `st`, `se` and `sig`, an HMAC-SHA256 of the string to sign of version 2020-12-06 and later.
    pub(crate) fn sas_link(&self, name: &str, ttl: Duration) -> String {
        let now = SystemTime::now();
        // A little in the past: the store's clock may be behind.
        let start = sas_time(now - Duration::from_secs(60));
        let expiry = sas_time(now + ttl);
        let resource = format!("/blob/{}/{CONTAINER}/{name}", self.account);
        let string_to_sign =
            ["r", &start, &expiry, &resource, "", "", "", VERSION, "b", "", "", "", "", "", "", ""].join("\n");
        let signature = self.sign(&string_to_sign);
        let query: Vec<String> = [
            ("sv", VERSION),
            ("st", start.as_str()),
            ("se", expiry.as_str()),
            ("sr", "b"),
            ("sp", "r"),
            ("sig", signature.as_str()),
        ]
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect();
        format!("{}/{CONTAINER}/{name}?{}", self.endpoint, query.join("&"))
    }

    async fn ensure_container(&self) -> Result<(), String> {
        self.container
            .get_or_try_init(|| async {
                let path = format!("/{CONTAINER}");
                match self.send(reqwest::Method::PUT, &path, &[("restype", "container")], Vec::new(), Vec::new()).await
                {
                    Err(error) if error.contains("ContainerAlreadyExists") => Ok(()),
                    done => done,
                }
            })
            .await
            .map(drop)
    }

    /// One request with Shared Key authentication; any answer but 2xx is an error naming the
    /// store's error code.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        mut headers: Vec<(&str, String)>,
        body: Vec<u8>,
    ) -> Result<(), String> {
        headers.push(("x-ms-date", httpdate(SystemTime::now())));
        headers.push(("x-ms-version", VERSION.to_owned()));
        let length = body.len();
        let standard = |name: &str| {
            headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map_or("", |(_, value)| value.as_str())
        };
        let length_text = if length == 0 { String::new() } else { length.to_string() };
        let mut canonical_headers: Vec<(String, &str)> = headers
            .iter()
            .filter(|(name, _)| name.to_ascii_lowercase().starts_with("x-ms-"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.as_str()))
            .collect();
        canonical_headers.sort();
        let mut sorted_query: Vec<(String, &str)> =
            query.iter().map(|(name, value)| (name.to_ascii_lowercase(), *value)).collect();
        sorted_query.sort();
        let mut resource = format!("/{}{}{path}", self.account, self.endpoint_path);
        for (name, value) in &sorted_query {
            resource.push_str(&format!("\n{name}:{value}"));
        }
        let mut string_to_sign = [
            method.as_str(),
            standard("Content-Encoding"),
            standard("Content-Language"),
            &length_text,
            standard("Content-MD5"),
            standard("Content-Type"),
            "",
            "",
            "",
            "",
            "",
            standard("Range"),
        ]
        .join("\n");
        string_to_sign.push('\n');
        for (name, value) in &canonical_headers {
            string_to_sign.push_str(&format!("{name}:{value}\n"));
        }
        string_to_sign.push_str(&resource);
        let authorization = format!("SharedKey {}:{}", self.account, self.sign(&string_to_sign));

        let query_text: Vec<String> =
            query.iter().map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE))).collect();
        let mut url = format!("{}{path}", self.endpoint);
        if !query_text.is_empty() {
            url.push('?');
            url.push_str(&query_text.join("&"));
        }
        let mut request = self.http.request(method.clone(), &url).header("Authorization", authorization);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response =
            request.body(body).send().await.map_err(|error| {
                format!("the blob store at {} did not answer {method} {path}: {error}", self.endpoint)
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code =
            response.headers().get("x-ms-error-code").and_then(|code| code.to_str().ok()).unwrap_or("").to_owned();
        Err(format!("the blob store answered {method} {path} with HTTP {status} {code}"))
    }

    fn sign(&self, text: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key);
        BASE64.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
    }
}

/// A SAS time: `2026-01-02T03:04:05Z`.
fn sas_time(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn httpdate(time: SystemTime) -> String {
    crate::responses::http_date(time)
}

struct UrlParts {
    host: String,
    path: String,
}

/// The host and path of an `http(s)://host[:port]/path` URL.
fn url_parts(url: &str) -> Option<UrlParts> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    if host.is_empty() || path.contains(['?', '#']) {
        return None;
    }
    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
    Some(UrlParts { host: host.to_owned(), path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_path_or_the_host() {
        let emulator = BlobStore::new("http://127.0.0.1:10000/devstoreaccount1/").unwrap();
        assert_eq!(emulator.account, "devstoreaccount1");
        assert_eq!(emulator.endpoint_path, "/devstoreaccount1");
        let azure = BlobStore::new("https://contoso.blob.core.windows.net").unwrap();
        assert_eq!(azure.account, "contoso");
        assert!(BlobStore::new("ftp://x/y").is_err());
        let link = emulator.sas_link("a/0", Duration::from_secs(60));
        assert!(link.starts_with("http://127.0.0.1:10000/devstoreaccount1/live-response-results/a/0?sv="), "{link}");
        assert!(link.contains("&sr=b&sp=r&sig="), "{link}");
    }
}
