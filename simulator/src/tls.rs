//! `--tls`: a certificate authority and a server certificate for the loopback names, generated at
//! start; the CA certificate is written out for clients (`ca_file`).

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempPath;
use tokio_rustls::TlsAcceptor;

pub(crate) struct ServerTls {
    pub(crate) acceptor: TlsAcceptor,
    pub(crate) ca_file: CaFile,
}

/// The CA certificate (PEM) on disk; a temporary file is removed when this is dropped.
pub(crate) struct CaFile {
    path: PathBuf,
    _temporary: Option<TempPath>,
}

impl CaFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// A CA and a certificate it signs for `localhost`, `127.0.0.1`, `::1` and `listen_ips`; the CA
/// certificate goes to `ca_out`, or to a temporary file.
pub(crate) fn generate(listen_ips: &[IpAddr], ca_out: Option<&Path>) -> io::Result<ServerTls> {
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    ca_params.distinguished_name = common_name("defender-simulator local CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca_params);
    let ca_certificate = ca_params.self_signed(&ca_key).map_err(tls_error)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    for ip in listen_ips {
        let ip = ip.to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    let mut params = CertificateParams::new(names).map_err(tls_error)?;
    params.distinguished_name = common_name("defender-simulator");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params);
    let key = KeyPair::generate().map_err(tls_error)?;
    let certificate = params.signed_by(&key, &issuer).map_err(tls_error)?;

    // The ring provider given explicitly: a process-wide default is the embedding program's call.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone(), ca_certificate.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(tls_error)?;
    // The download faults rely on HTTP/1.1 framing.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(ServerTls { acceptor: TlsAcceptor::from(Arc::new(config)), ca_file: write_ca(&ca_certificate.pem(), ca_out)? })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, name);
    distinguished_name
}

/// From yesterday for a year: some TLS stacks refuse server certificates valid for much longer.
fn set_validity(params: &mut CertificateParams) {
    let today = DateTime::<Utc>::from(SystemTime::now()).date_naive();
    let date = |date: Option<NaiveDate>| {
        let date = date.expect("a year from now is a valid date");
        rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8)
    };
    params.not_before = date(today.checked_sub_days(Days::new(1)));
    params.not_after = date(today.checked_add_days(Days::new(365)));
}

fn write_ca(pem: &str, ca_out: Option<&Path>) -> io::Result<CaFile> {
    match ca_out {
        Some(path) => {
            std::fs::write(path, pem)?;
            Ok(CaFile { path: path.to_owned(), _temporary: None })
        }
        None => {
            let mut file = tempfile::Builder::new().prefix("defender-simulator-ca-").suffix(".pem").tempfile()?;
            file.write_all(pem.as_bytes())?;
            let temporary = file.into_temp_path();
            Ok(CaFile { path: temporary.to_path_buf(), _temporary: Some(temporary) })
        }
    }
}

fn tls_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("generating the TLS certificate failed: {error}"))
}
