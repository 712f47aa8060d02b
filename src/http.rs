//! The HTTP transport shared by sign-in, the API and downloads: one connection pool per client,
//! TLS through rustls with the operating system's trust store (plus `ca_file`).

use std::error::Error as _;
use std::sync::Arc;

use futures_util::StreamExt;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::Settings;
use crate::error::{DefenderStatus, Error, Result};

pub const USER_AGENT: &str = concat!("defender-package/", env!("CARGO_PKG_VERSION"));

/// Builds the connection pool for `settings` (timeouts, extra trust roots, user agent).
pub fn build_client(settings: &Settings) -> Result<reqwest::Client> {
    let user_agent = match &settings.user_agent {
        Some(extra) => format!("{USER_AGENT} {extra}"),
        None => USER_AGENT.to_owned(),
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .tls_backend_preconfigured(tls_config(settings)?)
        // A stalled body is caught by the idle-read timeout; a whole download may take far longer
        // than any per-request limit, so API requests set their own total timeout.
        .redirect(reqwest::redirect::Policy::limited(5));
    if let Some(timeout) = settings.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = settings.timeout {
        builder = builder.read_timeout(timeout);
    }
    builder.build().map_err(|err| Error::internal(format!("could not set up HTTP: {}", chain(&err))))
}

pub(crate) fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra_roots = match &settings.ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
        .map_err(|err| Error::internal(format!("could not load the system's trust store: {err}")))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::internal(format!("could not set up TLS: {err}")))?
        .dangerous() // not dangerous: the platform verifier does full certificate validation
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|err| Error::invalid_argument(format!("ca_file '{shown}' could not be read as PEM: {err}")))?;
    if certs.is_empty() {
        return Err(Error::invalid_argument(format!("ca_file '{shown}' holds no certificate")));
    }
    Ok(certs)
}

/// A transport failure as a status and a sentence, without the URL (it may carry a SAS token).
pub fn describe_transport_error(err: &reqwest::Error) -> Error {
    let status = if err.is_timeout() { DefenderStatus::Timeout } else { DefenderStatus::Network };
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    Error::new(status, format!("{kind} ({})", chain(err)))
}

/// An error and its causes, joined: "error sending request: connection refused (os error 111)".
/// reqwest's own text ends in " for url (<url>)"; that part is dropped (the source chain never
/// holds the URL).
pub fn chain(err: &reqwest::Error) -> String {
    let shown = err.to_string();
    let mut text = shown.split(" for url (").next().unwrap_or_default().to_owned();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads a whole (small) body, refusing one over `limit` bytes.
pub async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| describe_transport_error(&err))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::protocol(format!("the answer is larger than the {limit} bytes expected")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
