//! Client assertions: the RS256 JWT an app signs with its certificate's key instead of sending a
//! secret, verified as Entra ID does. Each failure has its own description, so a test sees
//! exactly what was wrong.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Map, Value};
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use crate::request_log::AssertionClaims;

/// How far `nbf` and `exp` may be off the simulator's clock.
const CLOCK_SKEW_SECS: i64 = 60;

/// The certificate registered for an app: what an assertion's header and signature must match.
pub(crate) struct RegisteredCertificate {
    /// base64url of the SHA-1 of the DER certificate.
    x5t: String,
    /// PKCS#1 `RSAPublicKey`, DER.
    public_key: Vec<u8>,
}

impl RegisteredCertificate {
    /// Takes the first `CERTIFICATE` block of `pem`; it must hold an RSA key.
    pub(crate) fn from_pem(pem: &str) -> Result<RegisteredCertificate, String> {
        for block in Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|error| format!("certificate_pem is not valid PEM: {error}"))?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            let certificate = block
                .parse_x509()
                .map_err(|error| format!("certificate_pem holds a certificate that cannot be parsed: {error}"))?;
            let key = certificate.public_key();
            if !matches!(key.parsed(), Ok(PublicKey::RSA(_))) {
                return Err("certificate_pem: client assertions are signed RS256, so the certificate needs an RSA key"
                    .to_owned());
            }
            return Ok(RegisteredCertificate {
                x5t: URL_SAFE_NO_PAD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &block.contents)),
                public_key: key.subject_public_key.data.to_vec(),
            });
        }
        Err("certificate_pem holds no CERTIFICATE block".to_owned())
    }
}

/// Why an assertion was refused: an AADSTS code and its description.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) code: u32,
    pub(crate) description: String,
}

fn reject<T>(code: u32, description: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection { code, description: description.into() })
}

const MALFORMED: u32 = 50027;
const BAD_CERTIFICATE_OR_SIGNATURE: u32 = 700027;
const BAD_AUDIENCE: u32 = 50012;
const BAD_CLIENT: u32 = 700021;
const OUTSIDE_TIME_RANGE: u32 = 700024;

/// What a valid assertion for this sign-in must say.
pub(crate) struct Expectations<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) certificate: Option<&'a RegisteredCertificate>,
    /// Token endpoint URLs that count as this endpoint.
    pub(crate) audiences: &'a [String],
}

/// An assertion whose parts decode, not yet verified.
pub(crate) struct DecodedAssertion {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl DecodedAssertion {
    pub(crate) fn parse(assertion: &str) -> Result<DecodedAssertion, Rejection> {
        let malformed = || {
            Rejection {
            code: MALFORMED,
            description: "JWT token is invalid or malformed: the client assertion is not three base64url parts with a JSON header and claims.".to_owned(),
        }
        };
        let (signing_input, signature) = assertion.rsplit_once('.').ok_or_else(malformed)?;
        let (header, claims) = signing_input.split_once('.').ok_or_else(malformed)?;
        let json_object = |part: &str| {
            URL_SAFE_NO_PAD_INDIFFERENT
                .decode(part)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
                .ok_or_else(malformed)
        };
        Ok(DecodedAssertion {
            header: json_object(header)?,
            claims: json_object(claims)?,
            signing_input: signing_input.to_owned(),
            signature: URL_SAFE_NO_PAD_INDIFFERENT.decode(signature).map_err(|_| malformed())?,
        })
    }

    /// The header and claims the request log shows (never the signature).
    pub(crate) fn summary(&self) -> AssertionClaims {
        AssertionClaims {
            x5t: string_field(&self.header, "x5t"),
            aud: string_field(&self.claims, "aud"),
            iss: string_field(&self.claims, "iss"),
            sub: string_field(&self.claims, "sub"),
            jti: string_field(&self.claims, "jti"),
            nbf: time_field(&self.claims, "nbf"),
            exp: time_field(&self.claims, "exp"),
        }
    }

    pub(crate) fn verify(&self, expected: &Expectations, now: SystemTime) -> Result<(), Rejection> {
        let claims = self.summary();
        match self.header.get("alg").and_then(Value::as_str) {
            Some("RS256") => {}
            other => {
                return reject(
                    MALFORMED,
                    format!(
                        "JWT token is invalid or malformed: the client assertion must be signed RS256, its 'alg' is {other:?}."
                    ),
                );
            }
        }
        let Some(x5t) = claims.x5t.as_deref() else {
            return reject(
                MALFORMED,
                "JWT token is invalid or malformed: the client assertion header has no 'x5t' (base64url SHA-1 thumbprint of the certificate).",
            );
        };
        let Some(certificate) = expected.certificate else {
            return reject(
                BAD_CERTIFICATE_OR_SIGNATURE,
                format!(
                    "Client assertion contains an invalid signature: no certificate is registered on application '{}'.",
                    expected.client_id
                ),
            );
        };
        if x5t != certificate.x5t {
            return reject(
                BAD_CERTIFICATE_OR_SIGNATURE,
                format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{x5t}', registered: '{}']",
                    certificate.x5t
                ),
            );
        }
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &certificate.public_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .or_else(|_| {
                reject(
                    BAD_CERTIFICATE_OR_SIGNATURE,
                    "Client assertion failed signature validation: the RS256 signature does not match the registered certificate's key.",
                )
            })?;
        match claims.aud.as_deref() {
            Some(aud) if expected.audiences.iter().any(|accepted| accepted == aud) => {}
            aud => {
                return reject(
                    BAD_AUDIENCE,
                    format!(
                        "Client assertion audience claim does not match Realm issuer: 'aud' is {aud:?}, expected '{}'.",
                        expected.audiences[0]
                    ),
                );
            }
        }
        for (name, value) in [("iss", &claims.iss), ("sub", &claims.sub)] {
            if value.as_deref() != Some(expected.client_id) {
                return reject(
                    BAD_CLIENT,
                    format!(
                        "Client assertion application identifier doesn't match 'client_id' parameter: '{name}' is {value:?}, 'client_id' is '{}'.",
                        expected.client_id
                    ),
                );
            }
        }
        let (Some(not_before), Some(expires)) = (claims.nbf, claims.exp) else {
            return reject(
                MALFORMED,
                "JWT token is invalid or malformed: the client assertion needs numeric 'nbf' and 'exp' claims.",
            );
        };
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
        if not_before > now + CLOCK_SKEW_SECS || expires <= now - CLOCK_SKEW_SECS {
            return reject(
                OUTSIDE_TIME_RANGE,
                format!(
                    "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {not_before}, expiry time of assertion {expires}."
                ),
            );
        }
        if claims.jti.as_deref().is_none_or(str::is_empty) {
            return reject(MALFORMED, "JWT token is invalid or malformed: the client assertion has no 'jti' claim.");
        }
        Ok(())
    }
}

fn string_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// A NumericDate: seconds since 1970, possibly with a fraction.
fn time_field(object: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = object.get(name)?;
    value.as_i64().or_else(|| value.as_f64().map(|seconds| seconds as i64))
}
