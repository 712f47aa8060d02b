//! The HTTP transport shared by sign-in, the API and downloads: one connection pool per client,
//! TLS through rustls with the operating system's trust store (plus `ca_file`).

use std::error::Error as _;
use std::sync::Arc;

use futures_util::StreamExt;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use url::Url;

use crate::config::{self, Settings};
use crate::error::{DefenderStatus, Error, Result};

pub(crate) const USER_AGENT: &str = concat!("defender-package/", env!("CARGO_PKG_VERSION"));

/// Builds the connection pool for `settings` (timeouts, extra trust roots, user agent).
/// The connection pools of a client: one for the API and downloads, which follow a few
/// redirects (see `redirect_policy`), and one for sign-in, which follows none: a token request
/// carries the client secret or assertion, and a redirect would carry it elsewhere.
#[derive(Clone)]
pub(crate) struct Pools {
    pub api: reqwest::Client,
    pub sign_in: reqwest::Client,
}

/// Builds the connection pools for `settings` (timeouts, extra trust roots, user agent).
pub(crate) fn build_clients(settings: &Settings) -> Result<Pools> {
    Ok(Pools {
        api: build_client(settings, redirect_policy())?,
        sign_in: build_client(settings, reqwest::redirect::Policy::none())?,
    })
}

fn build_client(settings: &Settings, redirects: reqwest::redirect::Policy) -> Result<reqwest::Client> {
    let user_agent = match &settings.user_agent {
        Some(extra) => format!("{USER_AGENT} {extra}"),
        None => USER_AGENT.to_owned(),
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .tls_backend_preconfigured(tls_config(settings)?)
        // A stalled body is caught by the idle-read timeout; a whole download may take far longer
        // than any per-request limit, so API requests set their own total timeout.
        .redirect(redirects)
        // A Referer would carry the whole link, SAS token included, to the next host.
        .referer(false)
        .proxy(system_proxy_except_loopback());
    if let Some(timeout) = settings.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = settings.timeout {
        builder = builder.read_timeout(timeout);
    }
    builder.build().map_err(|err| Error::internal(format!("could not set up HTTP: {}", chain(&err))))
}

/// The proxy reqwest would use (the environment's `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
/// `NO_PROXY`, or the system's settings on Windows and macOS), except for loopback destinations:
/// a local simulator or endpoint is never reached through a proxy, which would see its traffic
/// (bearer token and client secret included, over plain http) and could not reach it anyway.
fn system_proxy_except_loopback() -> reqwest::Proxy {
    let system = hyper_util::client::proxy::matcher::Matcher::from_system();
    reqwest::Proxy::custom(move |destination: &Url| {
        if config::is_loopback(destination) {
            return None;
        }
        let uri: http::Uri = destination.as_str().parse().ok()?;
        let intercept = system.intercept(&uri)?;
        let mut proxy = Url::parse(&intercept.uri().to_string()).ok()?;
        if let Some((user, password)) = intercept.raw_auth() {
            proxy.set_username(user).ok()?;
            proxy.set_password(Some(password)).ok()?;
        }
        Some(proxy)
    })
}

/// Redirects followed at most, by API calls and downloads.
const MAX_REDIRECTS: usize = 5;

/// A redirect the library does not follow; the call ends with `PROTOCOL` and this as its message.
#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedirectRefused {}

/// API calls and downloads follow up to `MAX_REDIRECTS` redirects, each to an absolute `https`
/// URL without user information (`http` only to loopback, and only when no step before was
/// `https`: never a downgrade). reqwest drops `Authorization` on a redirect to another host,
/// scheme or port, and sends no `Referer` (see `build_client`).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let refuse = |why: &str| RedirectRefused(format!("a redirect to {} was refused: {why}", shown_origin(next)));
        let downgrade = next.scheme() != "https" && attempt.previous().iter().any(|url| url.scheme() == "https");
        let refused = if attempt.previous().len() > MAX_REDIRECTS {
            Some(refuse(&format!("more than {MAX_REDIRECTS} redirects in a row")))
        } else if downgrade {
            Some(refuse("it leaves https for plain http"))
        } else if !(next.scheme() == "https" || (next.scheme() == "http" && config::is_loopback(next))) {
            Some(refuse("only https is followed"))
        } else if !next.username().is_empty() || next.password().is_some() {
            Some(refuse("it carries user information"))
        } else {
            None
        };
        match refused {
            Some(refused) => attempt.error(refused),
            None => attempt.follow(),
        }
    })
}

/// `scheme://host:port` of `url`, for messages: never its user information, path or query.
pub(crate) fn shown_origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("(no host)");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// A sign-in endpoint answered with a redirect: never followed (the request carries a secret).
pub(crate) fn refused_sign_in_redirect(endpoint: &str, response: &reqwest::Response) -> Error {
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|location| location.to_str().ok())
        .and_then(|location| response.url().join(location).ok())
        .map_or_else(|| "an unreadable location".to_owned(), |url| shown_origin(&url));
    Error::protocol(format!(
        "{endpoint} answered HTTP {} with a redirect to {target}, which was refused: sign-in requests \
         carry a credential and are never redirected",
        response.status()
    ))
}

pub(crate) fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new(settings.ca_file.as_deref(), &provider)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::internal(format!("could not set up TLS: {err}")))?
        .dangerous() // not dangerous: Verifier does full certificate validation
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // A preconfigured TLS setup gets no ALPN from reqwest: without it, HTTP/2 is never negotiated.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How a server certificate is verified: by the operating system (its trust store; on Windows
/// and macOS also its policies and revocation checks), and a certificate the system refuses is
/// then checked against `ca_file`'s roots alone by rustls's WebPKI verifier (expiry, name,
/// signatures, constraints). One the system calls revoked stays refused.
///
/// Not rustls-platform-verifier's `new_with_extra_roots`: on Windows it builds a second
/// certificate chain engine whose exclusive root store holds the extra roots
/// (`CertCreateCertificateChainEngine`), even for an empty list. Wine's crypt32 refuses that
/// engine ("Invalid parameter"), so no call could be made at all under Wine. The system's default
/// engine, then a WebPKI check of the extra roots, is the same order the platform verifier follows
/// on Windows (extra roots only for a chain the system does not trust), works under Wine, and is
/// one way on every system (on Linux the platform verifier is WebPKI over the system's roots and
/// the extra ones anyway). A certificate issued under `ca_file` is not checked for revocation: a
/// private CA or a TLS-inspecting proxy seldom publishes a revocation list.
#[derive(Debug)]
struct Verifier {
    platform: rustls_platform_verifier::Verifier,
    extra_roots: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl Verifier {
    fn new(ca_file: Option<&std::path::Path>, provider: &Arc<rustls::crypto::CryptoProvider>) -> Result<Self> {
        let platform = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|err| Error::internal(format!("could not load the system's trust store: {err}")))?;
        let extra_roots = match ca_file {
            None => None,
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in read_ca_file(path)? {
                    roots.add(certificate).map_err(|err| {
                        Error::invalid_argument(format!(
                            "ca_file '{}' holds a certificate that cannot be a trust root: {err}",
                            path.display()
                        ))
                    })?;
                }
                let verifier =
                    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|err| Error::internal(format!("could not set up TLS with ca_file: {err}")))?;
                Some(verifier)
            }
        };
        Ok(Self { platform, extra_roots })
    }
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let system = self.platform.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match (&system, &self.extra_roots) {
            (Err(rustls::Error::InvalidCertificate(why)), Some(extra_roots))
                if *why != rustls::CertificateError::Revoked =>
            {
                match extra_roots.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                    // Not issued under ca_file either: the system's reason is the one to give.
                    Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => system,
                    // Issued under ca_file: accepted, or refused for its own reason (expired, ...).
                    verified => verified,
                }
            }
            _ => system,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.platform.supported_verify_schemes()
    }
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

/// A transport failure as a status and a sentence naming the host (scheme, host and port: never
/// the path or query, which may carry a SAS token), so that "which proxy, which firewall rule"
/// can be answered. A refused redirect is `PROTOCOL`; a refused certificate `NETWORK`, saying why.
pub(crate) fn describe_transport_error(err: &reqwest::Error) -> Error {
    if let Some(final_error) = final_transport_error(err) {
        return final_error;
    }
    let status = if err.is_timeout() { DefenderStatus::Timeout } else { DefenderStatus::Network };
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let host = err.url().map(|url| format!(" to {}", shown_origin(url))).unwrap_or_default();
    Error::new(status, format!("{kind}{host} ({})", chain(err)))
}

/// The failure, when sending the request again cannot help: a redirect the policy refused, a
/// server certificate that failed verification, a URL the HTTP client cannot request, or an
/// answer that is not valid HTTP (a head too large, a `Content-Length` that is not a number).
/// Retrying would only lose time, and hide the reason behind "gave up after 6 attempts".
pub(crate) fn final_transport_error(err: &reqwest::Error) -> Option<Error> {
    if err.is_builder() {
        return Some(Error::protocol(format!("the request could not be made ({})", chain(err))));
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RedirectRefused>() {
            return Some(Error::protocol(refused.to_string()));
        }
        if let Some(rustls::Error::InvalidCertificate(why)) = tls_error(cause) {
            return Some(Error::new(DefenderStatus::Network, certificate_refused(why)));
        }
        if let Some(invalid) = cause.downcast_ref::<hyper::Error>().filter(|invalid| invalid.is_parse()) {
            // "message head is too large", "invalid content-length parsed", ...
            return Some(Error::protocol(format!("the server's answer is not valid HTTP ({invalid})")));
        }
        source = cause.source();
    }
    None
}

/// Whether the HTTP client can send a request to `url`: a URL the URL parser takes can still be
/// one HTTP cannot carry (a `{` in its host), which would fail every try the same way.
pub(crate) fn requestable(url: &Url) -> bool {
    url.as_str().parse::<http::Uri>().is_ok()
}

/// Refuses an answer with both `Content-Length` and `Transfer-Encoding`: RFC 9112 (6.3) says to
/// treat it as an error, since it is how requests are smuggled and answers split.
pub(crate) fn check_framing(headers: &reqwest::header::HeaderMap) -> Result<()> {
    use reqwest::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    if headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING) {
        return Err(Error::protocol(
            "the server's answer has both Content-Length and Transfer-Encoding, which HTTP forbids (RFC 9112)",
        ));
    }
    Ok(())
}

/// The TLS error behind `cause`, which may be wrapped in I/O errors (by the TLS stream, then by
/// the connector), whose `source` skips the error they wrap.
fn tls_error<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut current = cause;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// Why a server certificate was refused, in words; `ca_file` is the remedy for a private CA or
/// a TLS-inspecting proxy.
pub(crate) fn certificate_refused(why: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Why;
    let reason = match why {
        Why::UnknownIssuer => "unknown issuer: it is not signed by a certificate authority this machine trusts \
             (for a private CA or a TLS-inspecting proxy, set ca_file to its PEM)"
            .to_owned(),
        Why::Expired | Why::ExpiredContext { .. } => "expired: it is past its validity period".to_owned(),
        Why::NotValidYet | Why::NotValidYetContext { .. } => {
            "not valid yet: its validity period has not started (or this machine's clock is wrong)".to_owned()
        }
        Why::NotValidForName | Why::NotValidForNameContext { .. } => {
            "name mismatch: it is not valid for the host name that was asked for".to_owned()
        }
        Why::Revoked => "revoked by its issuer".to_owned(),
        Why::BadSignature => "bad signature".to_owned(),
        // The system's own reason (Windows: its message and the HRESULT as "os error").
        Why::Other(reason) => format!("refused by the system: {reason}"),
        other => format!("{other:?}"),
    };
    format!("certificate verification failed, the server's certificate is {reason}")
}

/// An error and its causes, joined: "error sending request: connection refused (os error 111)".
/// reqwest's own text ends in " for url (<url>)"; that part is dropped (the source chain never
/// holds the URL).
pub(crate) fn chain(err: &reqwest::Error) -> String {
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

/// Reads a whole (small) body, refusing one over `limit` bytes (before reading it, when its
/// length says so) and one whose framing is ambiguous (`check_framing`).
pub(crate) async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>> {
    check_framing(response.headers())?;
    if let Some(length) = response.content_length().filter(|length| *length > limit as u64) {
        return Err(Error::protocol(format!("the answer is {length} bytes, larger than the {limit} bytes expected")));
    }
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
