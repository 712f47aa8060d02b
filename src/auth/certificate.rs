//! Client assertions signed with an app's certificate: the RS256 JWT that Entra ID takes instead
//! of a client secret (RFC 7523, as MSAL builds it).
//!
//! ring signs (it is the crypto TLS already uses, so the library carries one RSA
//! implementation); x509-parser finds the certificate that belongs to the key.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde_json::json;

use crate::error::{Error, Result};
use crate::redact::Secret;

/// How long a signed assertion is valid: long enough for one token request, short enough
/// that a captured one is soon useless.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// A certificate and its RSA private key, read from a PEM file.
pub(super) struct ClientCertificate {
    key: RsaKeyPair,
    /// SHA-1 of the DER certificate: Entra ID's thumbprint of it.
    sha1: Vec<u8>,
}

impl ClientCertificate {
    /// Reads `path`: PEM with the private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`)
    /// and its certificate, possibly among others (a chain). The certificate used is the one whose
    /// public key is the private key's. Every failure names the file, never its contents.
    pub(super) fn read(path: &Path) -> Result<Self> {
        let refuse = |why: &str| Error::invalid_argument(format!("client certificate file '{}' {why}", path.display()));
        let pem = std::fs::read(path).map_err(|err| refuse(&format!("could not be read: {err}")))?;

        let mut certificates = Vec::new();
        let mut private_key = None;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&pem) {
            // pki-types' errors are about the PEM framing; none is shown, to be sure no key
            // material reaches a message.
            let (kind, der) = section.map_err(|_| refuse("is not valid PEM"))?;
            match kind {
                SectionKind::Certificate => certificates.push(der),
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
                    if private_key.is_none() =>
                {
                    private_key = Some((kind, der))
                }
                _ => {}
            }
        }

        let Some((kind, der)) = private_key else {
            return Err(refuse(
                "holds no private key: it needs the certificate and its unencrypted RSA private key in PEM \
                 ('PRIVATE KEY' or 'RSA PRIVATE KEY'); convert a .pfx or an encrypted key first, e.g. \
                 openssl pkcs12 -in app.pfx -out app.pem -nodes",
            ));
        };
        let key = match kind {
            SectionKind::PrivateKey => RsaKeyPair::from_pkcs8(&der),
            SectionKind::RsaPrivateKey => RsaKeyPair::from_der(&der),
            _ => return Err(refuse("holds an EC private key; client assertions are signed RS256 with an RSA key")),
        }
        .map_err(|rejected| match rejected.to_string().as_str() {
            "WrongAlgorithm" => {
                refuse("holds a private key that is not an RSA key; client assertions are signed RS256")
            }
            "TooSmall" => refuse("holds an RSA private key shorter than 2048 bits, which Entra ID refuses"),
            why => refuse(&format!("holds an RSA private key that cannot be used ({why})")),
        })?;

        if certificates.is_empty() {
            return Err(refuse("holds no certificate (a 'CERTIFICATE' section beside the private key)"));
        }
        let certificate = certificates.iter().find(|der| holds_public_key(der, key.public().as_ref()));
        let Some(certificate) = certificate else {
            return Err(refuse(&format!(
                "holds {} certificate(s), none of them for its private key",
                certificates.len()
            )));
        };
        Ok(Self { key, sha1: digest(&SHA1_FOR_LEGACY_USE_ONLY, certificate).as_ref().to_vec() })
    }

    /// The thumbprint as the Azure portal shows it (upper-case hex), for log lines.
    pub(super) fn thumbprint(&self) -> String {
        hex::encode_upper(&self.sha1)
    }

    /// A fresh assertion for `audience` (the token endpoint's URL): header `alg` RS256, `typ`,
    /// `x5t`; claims `aud`, `iss` = `sub` = the client id, a random `jti`, `nbf` now and `exp`
    /// a few minutes later.
    pub(super) fn sign_assertion(&self, client_id: &str, audience: &str) -> Result<Secret> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::internal("the system clock is set before 1970"))?
            .as_secs();
        let random = SystemRandom::new();
        let jti: [u8; 16] = ring::rand::generate(&random)
            .map_err(|_| Error::internal("the system's random number generator failed"))?
            .expose();
        let header = json!({ "alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(&self.sha1) });
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": hex::encode(jti),
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &random, signing_input.as_bytes(), &mut signature)
            .map_err(|_| Error::internal("could not sign the client assertion"))?;
        Ok(Secret::new(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))))
    }
}

/// Whether `certificate` (DER) is for the RSA key whose public half is `public_key` (PKCS#1
/// `RSAPublicKey`, DER, as the certificate carries it).
fn holds_public_key(certificate: &[u8], public_key: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(certificate).is_ok_and(|(_, parsed)| {
        let key = parsed.public_key();
        matches!(key.parsed(), Ok(x509_parser::public_key::PublicKey::RSA(_)))
            && *key.subject_public_key.data == *public_key
    })
}
