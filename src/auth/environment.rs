//! `environment=true`: an app's credentials from the environment variables that Azure Identity's
//! `EnvironmentCredential` reads, read the same way when a token is needed.

use std::path::PathBuf;

use url::Url;

use super::{App, Proof, environment_variable};
use crate::config::{self, PlainHttp, Settings};
use crate::error::{Error, Result};
use crate::redact::Secret;

const TENANT_ID: &str = "AZURE_TENANT_ID";
const CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub(super) const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
const CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";

/// The app the environment describes. A secret wins over a certificate when both are set, as in
/// Azure Identity. The sign-in host is the option `authority_url` when set, else
/// `AZURE_AUTHORITY_HOST`, else the cloud's.
pub(super) fn app(settings: &Settings) -> Result<App> {
    let tenant_id = environment_variable(TENANT_ID)?;
    let client_id = environment_variable(CLIENT_ID)?;
    let proof = match (environment_variable(CLIENT_SECRET)?, environment_variable(CLIENT_CERTIFICATE_PATH)?) {
        (Some(secret), _) => Some(Proof::Secret(Secret::new(secret))),
        (None, Some(path)) => Some(Proof::Certificate(PathBuf::from(path))),
        (None, None) => None,
    };
    let (Some(tenant_id), Some(client_id), Some(proof)) = (&tenant_id, &client_id, &proof) else {
        let missing: Vec<String> = [
            (tenant_id.is_none(), TENANT_ID.to_owned()),
            (client_id.is_none(), CLIENT_ID.to_owned()),
            (proof.is_none(), format!("{CLIENT_SECRET} or {CLIENT_CERTIFICATE_PATH}")),
        ]
        .into_iter()
        .filter(|(missing, _)| *missing)
        .map(|(_, name)| name)
        .collect();
        return Err(Error::invalid_argument(format!(
            "environment=true needs {TENANT_ID}, {CLIENT_ID}, and {CLIENT_SECRET} or {CLIENT_CERTIFICATE_PATH}; \
             not set: {}",
            missing.join(", ")
        )));
    };
    for (name, value) in [(TENANT_ID, tenant_id), (CLIENT_ID, client_id)] {
        if !config::is_identifier(value) {
            return Err(Error::invalid_argument(format!(
                "environment variable {name} takes a GUID or a domain name (letters, digits, '-', '.', '_'), not '{}'",
                value.escape_debug()
            )));
        }
    }
    let authority = match (&settings.authority_url, environment_variable(AUTHORITY_HOST)?) {
        (Some(option), _) => option.clone(),
        (None, Some(host)) => authority_host(&host)?,
        (None, None) => settings.authority(),
    };
    Ok(App { authority, tenant_id: tenant_id.clone(), client_id: client_id.clone(), proof: proof.clone() })
}

/// `AZURE_AUTHORITY_HOST`: a URL, or a bare host name as Azure Identity's constants spell them
/// (`login.microsoftonline.us`), which means https.
fn authority_host(value: &str) -> Result<Url> {
    let value = value.trim();
    let with_scheme = if value.contains("://") { value.to_owned() } else { format!("https://{value}") };
    Url::parse(&with_scheme).ok().filter(|url| config::is_service_url(url, PlainHttp::Loopback)).ok_or_else(|| {
        Error::invalid_argument(format!(
            "environment variable {AUTHORITY_HOST} takes an https URL such as https://login.microsoftonline.us \
             (http only for localhost), not '{}'",
            value.escape_debug()
        ))
    })
}
