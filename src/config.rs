//! The client's options: string keys and values as `defender_client_set` receives them
//! (librdkafka style), parsed into typed settings.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::cloud::Cloud;
use crate::download::file_name::FileNamePattern;
use crate::error::{DefenderStatus, Error, Result};
use crate::redact::Secret;

/// Which part of a client an option affects, so that changing one drops only what depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Affects {
    /// The sign-in: cached tokens are dropped.
    SignIn,
    /// The HTTP connection settings: the connection pool is rebuilt.
    Transport,
    /// Only how later calls behave.
    Behaviour,
}

/// How a managed identity is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ManagedIdentity {
    SystemAssigned,
    UserAssigned { client_id: String },
}

impl fmt::Display for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SystemAssigned => f.write_str("the system-assigned managed identity"),
            Self::UserAssigned { client_id } => write!(f, "the user-assigned managed identity {client_id}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Settings {
    pub base_url: Option<Url>,
    pub cloud: Cloud,
    pub authority_url: Option<Url>,
    pub scope: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_certificate_path: Option<PathBuf>,
    pub client_assertion: Option<Secret>,
    pub access_token: Option<Secret>,
    pub managed_identity: Option<ManagedIdentity>,
    pub managed_identity_endpoint: Option<Url>,
    /// With `managed_identity_endpoint`: App Service's `X-IDENTITY-HEADER` (`IDENTITY_HEADER`).
    pub managed_identity_header: Option<Secret>,
    pub environment: bool,
    /// Per request; `None` means no limit.
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    /// When set, get-URI and download first wait this long at most for the collection to finish,
    /// and a download for another call saving to the same file.
    pub wait_timeout: Option<Duration>,
    pub overwrite: bool,
    pub ca_file: Option<PathBuf>,
    pub user_agent: Option<String>,
    pub rate_limit: bool,
    pub clock_scale: f64,
    /// How many packages `defender_download_packages` downloads at once.
    pub max_concurrent_downloads: usize,
    /// The name a package gets in a destination folder.
    pub file_name_pattern: FileNamePattern,
    /// A download that brings fewer bytes than this in `min_speed_window` is a stall; 0: no minimum.
    pub min_speed_bytes: u64,
    pub min_speed_window: Duration,
    /// When set, a download (every try, resume and fresh link) ends after this long.
    pub download_timeout: Option<Duration>,
    /// A download whose host announces no length stops past this many bytes.
    pub max_bytes_without_length: u64,
    /// A list (`max_items` 0) stops past this many entities...
    pub list_max_items: usize,
    /// ... this many pages...
    pub list_max_pages: u32,
    /// ... or this long; `None`: no limit.
    pub list_timeout: Option<Duration>,
    /// Sign in with client assertions that the caller's assertion callback signs
    /// (`defender_client_set_assertion_callback`); not an option key.
    pub client_assertion_callback: bool,
}

pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Enough to keep a link's short life busy while the next links wait for the rate limit, few
/// enough not to crowd a responder's uplink.
const DEFAULT_CONCURRENT_DOWNLOADS: usize = 4;
const MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// A download slower than 64 KiB a minute (about 9 kbit/s) is stalled: no link a package is
/// fetched over is that slow for a whole minute, while a server that trickles bytes is caught.
pub(crate) const DEFAULT_MIN_SPEED_BYTES: u64 = 64 * 1024;
pub(crate) const DEFAULT_MIN_SPEED_WINDOW: Duration = Duration::from_secs(60);
/// Packages are megabytes to a few gigabytes, and Azure Storage always says how long they are;
/// a body without a length past this is not one.
pub(crate) const DEFAULT_MAX_BYTES_WITHOUT_LENGTH: u64 = 16 << 30;
/// Ten pages of 10,000: more machines or actions than most tenants have.
pub(crate) const DEFAULT_LIST_MAX_ITEMS: usize = 100_000;
/// A list of 100,000 in pages of 100 still fits.
pub(crate) const DEFAULT_LIST_MAX_PAGES: u32 = 1_000;
/// A thousand pages at the rate limit's 100 calls a minute take ten.
pub(crate) const DEFAULT_LIST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: None,
            cloud: Cloud::default(),
            authority_url: None,
            scope: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            client_certificate_path: None,
            client_assertion: None,
            access_token: None,
            managed_identity: None,
            managed_identity_endpoint: None,
            managed_identity_header: None,
            environment: false,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            wait_timeout: None,
            overwrite: false,
            ca_file: None,
            user_agent: None,
            rate_limit: true,
            clock_scale: 1.0,
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            file_name_pattern: FileNamePattern::default(),
            min_speed_bytes: DEFAULT_MIN_SPEED_BYTES,
            min_speed_window: DEFAULT_MIN_SPEED_WINDOW,
            download_timeout: None,
            max_bytes_without_length: DEFAULT_MAX_BYTES_WITHOUT_LENGTH,
            list_max_items: DEFAULT_LIST_MAX_ITEMS,
            list_max_pages: DEFAULT_LIST_MAX_PAGES,
            list_timeout: Some(DEFAULT_LIST_TIMEOUT),
            client_assertion_callback: false,
        }
    }
}

/// One option key of `defender_client_set`: everything about it is here, and everything else
/// (the header's list, the docs' table, the bindings' help, key enumeration through the C ABI)
/// is generated from this table or tested against it.
pub(crate) struct OptionKey {
    pub(crate) name: &'static str,
    pub(crate) affects: Affects,
    /// The value that behaves as the default, as a caller would set it; `None` when the default
    /// is "not set" (the doc says what then happens).
    pub(crate) default: Option<&'static str>,
    /// One line for a person: what it does, what it takes.
    pub(crate) doc: &'static str,
    /// Parses a value and sets the field.
    set: fn(&mut Settings, &str) -> Result<()>,
    /// Puts the field back to its `Settings::default()`.
    reset: fn(&mut Settings),
}

/// The table of `OptionKey`s: for each, `"key" => field, Affects, default, parser, "doc";` where
/// the parser turns `(key, value)` into the field's value.
macro_rules! options {
    ($($name:literal => $field:ident, $affects:ident, $default:expr, $parse:expr, $doc:literal;)*) => {
        &[$(OptionKey {
            name: $name,
            affects: Affects::$affects,
            default: $default,
            doc: $doc,
            set: |settings, value| {
                settings.$field = ($parse)($name, value)?;
                Ok(())
            },
            reset: |settings| settings.$field = Settings::default().$field,
        }),*]
    };
}

/// Every key `defender_client_set` accepts, in the order the header and the docs list them.
#[rustfmt::skip]
pub(crate) const OPTIONS: &[OptionKey] = options! {
    "base_url" => base_url, Behaviour, None, |k, v| parse_url(k, v, PlainHttp::Loopback).map(Some),
        "API root instead of the cloud's; plain http only to localhost";
    "cloud" => cloud, SignIn, Some("commercial"), parse_cloud,
        "the API and sign-in hosts: commercial, us, eu, uk, au, swa, ina, gcc, gcc-high or dod";
    "authority_url" => authority_url, SignIn, None, |k, v| parse_url(k, v, PlainHttp::Loopback).map(Some),
        "sign-in host instead of the cloud's";
    "scope" => scope, SignIn, None, |k, v| parse_text(k, v).map(Some),
        "token scope instead of the cloud's API resource + /.default";
    "tenant_id" => tenant_id, SignIn, None, |k, v| parse_identifier(k, v).map(Some),
        "the app's Entra ID tenant: a GUID or a domain name";
    "client_id" => client_id, SignIn, None, |k, v| parse_identifier(k, v).map(Some),
        "the app's client id: with client_secret, client_certificate_path or client_assertion";
    "client_secret" => client_secret, SignIn, None, |k, v| parse_secret(k, v).map(Some),
        "signs in as the app with this secret";
    "client_certificate_path" => client_certificate_path, SignIn, None, |k, v| parse_path(k, v).map(Some),
        "signs in as the app with this PEM file: certificate and unencrypted private key";
    "client_assertion" => client_assertion, SignIn, None, |k, v| parse_assertion(k, v).map(Some),
        "signs in as the app with this signed JWT, signed outside the library";
    "access_token" => access_token, SignIn, None, |k, v| parse_secret(k, v).map(Some),
        "a bearer token, used as it is";
    "managed_identity" => managed_identity, SignIn, None, |_, v| parse_managed_identity(v),
        "signs in as a managed identity: system, or a user-assigned identity's client id";
    "managed_identity_endpoint" => managed_identity_endpoint, SignIn, None,
        |k, v| parse_url(k, v, PlainHttp::ThisHost).map(Some),
        "token endpoint instead of Azure's IMDS (plain http to this host only)";
    "managed_identity_header" => managed_identity_header, SignIn, None, |k, v| parse_secret(k, v).map(Some),
        "with managed_identity_endpoint: App Service's IDENTITY_HEADER, for its IDENTITY_ENDPOINT, instead of reading both from the environment";
    "environment" => environment, SignIn, Some("false"), parse_bool,
        "true: signs in from the AZURE_* variables, as Azure Identity's EnvironmentCredential does";
    "timeout_ms" => timeout, Transport, Some("60000"), parse_optional_millis,
        "milliseconds per request, and for its retries; 0 for no limit";
    "connect_timeout_ms" => connect_timeout, Transport, Some("15000"), parse_optional_millis,
        "milliseconds to connect; 0 for no limit";
    "wait_timeout_ms" => wait_timeout, Behaviour, Some("0"), parse_optional_millis,
        "above 0: get-URI and download wait this long at most for the collection to finish, and a download for another call saving to the same file";
    "overwrite" => overwrite, Behaviour, Some("false"), parse_bool,
        "true: a download may replace an existing file";
    "ca_file" => ca_file, Transport, None, |k, v| parse_path(k, v).map(Some),
        "PEM file of extra trust roots (a TLS-inspecting proxy's)";
    "user_agent" => user_agent, Transport, None, |k, v| parse_text(k, v).map(Some),
        "text appended to the library's User-Agent";
    "rate_limit" => rate_limit, Behaviour, Some("on"), parse_on_off,
        "on: keep within the service's rate limits; off only for a server that has none";
    "clock_scale" => clock_scale, Behaviour, Some("1"), parse_clock_scale,
        "N: limits, back-off, Retry-After and waits run N times faster (for a fast simulator)";
    "max_concurrent_downloads" => max_concurrent_downloads, Behaviour, Some("4"),
        |k, v| parse_count(k, v, 1..=MAX_CONCURRENT_DOWNLOADS),
        "1 to 64: packages defender_download_packages downloads at once";
    "file_name_pattern" => file_name_pattern, Behaviour, Some("{action_id}.zip"), FileNamePattern::parse,
        "a package's file name in a destination folder: {action_id} (required), {machine_id}, {computer_dns_name}, {computer_name}, letters, digits, '.', '_', '-'";
    "min_speed_bytes" => min_speed_bytes, Behaviour, Some("65536"), |k, v| parse_count(k, v, 0..=u64::MAX),
        "a download that brings fewer bytes in min_speed_window_ms is a stall, retried as one; 0 for no minimum";
    "min_speed_window_ms" => min_speed_window, Behaviour, Some("60000"), parse_millis,
        "milliseconds over which min_speed_bytes is counted";
    "download_timeout_ms" => download_timeout, Behaviour, Some("0"), parse_optional_millis,
        "above 0: a download, its resumes and fresh links included, ends with TIMEOUT after this long";
    "max_bytes_without_length" => max_bytes_without_length, Behaviour, Some("17179869184"),
        |k, v| parse_count(k, v, 1..=u64::MAX),
        "a download whose host announces no length ends with PROTOCOL past this many bytes";
    "list_max_items" => list_max_items, Behaviour, Some("100000"), |k, v| parse_count(k, v, 1..=u32::MAX as usize),
        "a list called with max_items 0 ends with PROTOCOL past this many entities";
    "list_max_pages" => list_max_pages, Behaviour, Some("1000"), |k, v| parse_count(k, v, 1..=u32::MAX),
        "a list ends with PROTOCOL past this many pages";
    "list_timeout_ms" => list_timeout, Behaviour, Some("1800000"), parse_optional_millis,
        "a list ends with TIMEOUT after this long; 0 for no limit";
};

impl OptionKey {
    /// The one line about it that the header, the docs and the bindings show: the doc and the default.
    pub(crate) fn description(&self) -> String {
        match self.default {
            Some(default) => format!("{} (default {default})", self.doc),
            None => self.doc.to_owned(),
        }
    }
}

/// The option called `name`.
pub(crate) fn option(name: &str) -> Option<&'static OptionKey> {
    OPTIONS.iter().find(|option| option.name == name)
}

impl Settings {
    /// Sets `key` to `value`, or back to its default when `value` is `None`.
    /// Returns what the change affects.
    pub(crate) fn set(&mut self, key: &str, value: Option<&str>) -> Result<Affects> {
        let Some(option) = option(key) else {
            let known: Vec<&str> = OPTIONS.iter().map(|option| option.name).collect();
            return Err(Error::new(
                DefenderStatus::UnknownOption,
                format!("unknown option '{}'; the options are: {}", printable(key), known.join(", ")),
            ));
        };
        match value {
            Some(value) => (option.set)(self, value)?,
            None => (option.reset)(self),
        }
        Ok(option.affects)
    }

    /// The API root: `base_url`, else the cloud's API host.
    pub(crate) fn api_root(&self) -> Url {
        self.base_url
            .clone()
            .unwrap_or_else(|| Url::parse(self.cloud.endpoints().api).expect("the cloud table holds valid URLs"))
    }

    /// The sign-in host: `authority_url`, else the cloud's authority.
    pub(crate) fn authority(&self) -> Url {
        self.authority_url
            .clone()
            .unwrap_or_else(|| Url::parse(self.cloud.endpoints().authority).expect("the cloud table holds valid URLs"))
    }

    /// The OAuth scope for client credentials: `scope`, else the cloud's resource + `/.default`.
    pub(crate) fn scope(&self) -> String {
        match &self.scope {
            Some(scope) => scope.clone(),
            None => format!("{}/.default", self.cloud.endpoints().resource),
        }
    }

    /// The managed-identity resource: the scope without `/.default`.
    pub(crate) fn resource(&self) -> String {
        let scope = self.scope();
        scope.strip_suffix("/.default").unwrap_or(&scope).to_owned()
    }

    /// `duration` in the client's clock: divided by `clock_scale`, so that rate-limit windows,
    /// back-off and polling match a simulator whose clock runs fast.
    pub(crate) fn scaled(&self, duration: Duration) -> Duration {
        scale(duration, self.clock_scale)
    }
}

/// `duration` divided by `clock_scale`, saturating at `Duration::MAX` instead of panicking
/// (`Duration::div_f64` panics when the result does not fit, e.g. a `Retry-After` of `u64::MAX`).
pub(crate) fn scale(duration: Duration, clock_scale: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() / clock_scale).unwrap_or(Duration::MAX)
}

/// The instant `after` from now; an `after` too long for the clock (a value from the network, a
/// huge `wait_timeout_ms`) gives an instant a century away instead of a panic.
pub(crate) fn after(after: Duration) -> tokio::time::Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    let now = tokio::time::Instant::now();
    now.checked_add(after.min(CENTURY)).unwrap_or(now)
}

/// A value as it may be shown in a message: control characters escaped, long values cut.
fn printable(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut shown: String = value.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if value.chars().count() > MAX_CHARS {
        shown.push('…');
    }
    shown
}

fn malformed(key: &str, value: &str, accepts: &str) -> Error {
    Error::invalid_argument(format!("option '{key}' takes {accepts}, not '{}'", printable(value)))
}

fn parse_cloud(key: &str, value: &str) -> Result<Cloud> {
    Cloud::parse(value).ok_or_else(|| malformed(key, value, &format!("one of {}", Cloud::NAMES.join(", "))))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(malformed(key, value, "'true' or 'false'")),
    }
}

fn parse_on_off(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(malformed(key, value, "'on' or 'off'")),
    }
}

/// Milliseconds; `0` means no limit.
fn parse_optional_millis(key: &str, value: &str) -> Result<Option<Duration>> {
    let millis: u64 =
        value.trim().parse().map_err(|_| malformed(key, value, "a whole number of milliseconds (0 for none)"))?;
    Ok((millis > 0).then(|| Duration::from_millis(millis)))
}

fn parse_clock_scale(key: &str, value: &str) -> Result<f64> {
    const MAX: f64 = 1_000_000.0;
    match value.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale > 0.0 && scale <= MAX => Ok(scale),
        _ => Err(malformed(key, value, "a number above 0 and at most 1000000 (1 is real time)")),
    }
}

/// A whole number within `range`.
fn parse_count<T>(key: &str, value: &str, range: std::ops::RangeInclusive<T>) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    match value.trim().parse::<T>() {
        Ok(count) if range.contains(&count) => Ok(count),
        _ => Err(malformed(key, value, &format!("a whole number from {} to {}", range.start(), range.end()))),
    }
}

/// Milliseconds, at least one.
fn parse_millis(key: &str, value: &str) -> Result<Duration> {
    parse_count(key, value, 1..=u64::MAX).map(Duration::from_millis)
}

/// Free text that goes into a request (a header or a form field): no control characters.
fn parse_text(key: &str, value: &str) -> Result<String> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(malformed(key, value, "non-empty text without control characters"));
    }
    Ok(value.to_owned())
}

/// Tenant and client ids: GUIDs, or for tenants also a domain name. They go into URL paths.
pub(crate) fn is_identifier(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn parse_identifier(key: &str, value: &str) -> Result<String> {
    if !is_identifier(value) {
        return Err(malformed(key, value, "a GUID or a domain name (letters, digits, '-', '.', '_')"));
    }
    Ok(value.to_owned())
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits: how Entra ID spells client ids.
fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|group| group.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Secrets are never repeated in a message, not even when malformed.
fn parse_secret(key: &str, value: &str) -> Result<Secret> {
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(Error::invalid_argument(format!(
            "option '{key}' takes non-empty text without control characters (the value is not shown)"
        )));
    }
    Ok(Secret::new(value))
}

/// A signed JWT: three base64url parts. Anything else (a thumbprint, a file path) is refused
/// here rather than by the token endpoint, without repeating the value.
fn parse_assertion(key: &str, value: &str) -> Result<Secret> {
    let is_base64url =
        |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    let parts: Vec<&str> = value.trim().split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|part| is_base64url(part)) {
        return Err(Error::invalid_argument(format!(
            "option '{key}' takes a signed JWT (three base64url parts joined by '.'); the value is not one (and is not shown)"
        )));
    }
    Ok(Secret::new(value.trim()))
}

fn parse_path(key: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(malformed(key, value, "a file path"));
    }
    Ok(PathBuf::from(value))
}

/// `system`, or the client id (a GUID) of a user-assigned identity.
fn parse_managed_identity(value: &str) -> Result<Option<ManagedIdentity>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("system") {
        return Ok(Some(ManagedIdentity::SystemAssigned));
    }
    if !is_guid(value) {
        return Err(malformed(
            "managed_identity",
            value,
            "'system' or the client id (a GUID) of a user-assigned identity",
        ));
    }
    Ok(Some(ManagedIdentity::UserAssigned { client_id: value.to_ascii_lowercase() }))
}

/// Whether `url`'s host is this machine: plain `http` is allowed only there.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Where a URL that the library sends credentials to may use plain `http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Only to this machine: a simulator, a local proxy.
    Loopback,
    /// Also to the link-local host a VM runs on: managed identity's IMDS is `169.254.169.254`.
    ThisHost,
}

impl PlainHttp {
    fn allows(self, url: &Url) -> bool {
        let link_local = || match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_link_local(),
            Some(url::Host::Ipv6(ip)) => ip.is_unicast_link_local(),
            _ => false,
        };
        is_loopback(url) || (self == Self::ThisHost && link_local())
    }

    fn hosts(self) -> &'static str {
        match self {
            Self::Loopback => "localhost",
            Self::ThisHost => "this machine or a link-local address such as 169.254.169.254",
        }
    }
}

/// Whether the library may send credentials to `url`: absolute `https` (`http` only as
/// `plain_http` allows), no user name or password, no query or fragment.
pub(crate) fn is_service_url(url: &Url, plain_http: PlainHttp) -> bool {
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && plain_http.allows(url));
    scheme_ok
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
}

fn parse_url(key: &str, value: &str, plain_http: PlainHttp) -> Result<Url> {
    let accepts = format!("an absolute https URL (http only for {}), without query or fragment", plain_http.hosts());
    Url::parse(value.trim())
        .ok()
        .filter(|url| is_service_url(url, plain_http))
        .ok_or_else(|| malformed(key, value, &accepts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_a_good_value_and_resets_to_its_default() {
        let good = |key: &str| match key {
            "base_url" | "authority_url" | "managed_identity_endpoint" => "https://example.test",
            "cloud" => "gcc-high",
            "tenant_id" | "client_id" => "00000000-0000-0000-0000-000000000001",
            "managed_identity" => "system",
            "client_assertion" => "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
            "environment" | "overwrite" => "true",
            "rate_limit" => "off",
            "clock_scale" => "60",
            "max_concurrent_downloads" => "8",
            "file_name_pattern" => "{computer_name}_{action_id}.zip",
            "min_speed_bytes" | "max_bytes_without_length" | "list_max_items" | "list_max_pages" => "7",
            k if k.ends_with("_ms") => "1234",
            _ => "value",
        };
        for key in OPTIONS.iter().map(|option| option.name) {
            let mut settings = Settings::default();
            settings.set(key, Some(good(key))).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_ne!(settings, Settings::default(), "{key} changed nothing");
            settings.set(key, None).unwrap();
            assert_eq!(settings, Settings::default(), "{key} did not reset");
        }
    }

    #[test]
    fn unknown_key_names_the_key_and_the_known_ones() {
        let err = Settings::default().set("base_uri", Some("x")).unwrap_err();
        assert_eq!(err.status(), crate::DefenderStatus::UnknownOption);
        assert!(err.message().contains("'base_uri'"), "{err}");
        assert!(err.message().contains("base_url"), "{err}");
    }

    #[test]
    fn malformed_values_say_what_the_key_accepts() {
        let mut settings = Settings::default();
        let err = settings.set("timeout_ms", Some("soon")).unwrap_err();
        assert!(err.message().contains("milliseconds") && err.message().contains("'soon'"), "{err}");
        let err = settings.set("overwrite", Some("yes")).unwrap_err();
        assert!(err.message().contains("'true' or 'false'"), "{err}");
        let err = settings.set("cloud", Some("mars")).unwrap_err();
        assert!(err.message().contains("gcc-high"), "{err}");
        for bad in ["0", "65", "-1", "four"] {
            let err = settings.set("max_concurrent_downloads", Some(bad)).unwrap_err();
            assert!(err.message().contains("from 1 to 64"), "{err}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_no_query() {
        let mut settings = Settings::default();
        assert!(settings.set("base_url", Some("http://127.0.0.1:8080")).is_ok());
        assert!(settings.set("base_url", Some("http://localhost:1")).is_ok());
        assert!(settings.set("base_url", Some("http://api.example.com")).is_err());
        assert!(settings.set("base_url", Some("https://api.example.com/?x=1")).is_err());
        assert!(settings.set("base_url", Some("https://user:pw@api.example.com")).is_err());
        assert!(settings.set("base_url", Some("ftp://api.example.com")).is_err());
    }

    #[test]
    fn malformed_secrets_are_not_repeated() {
        let err = Settings::default().set("client_secret", Some("abc\ndef")).unwrap_err();
        assert!(!err.message().contains("abc"), "{err}");
    }

    #[test]
    fn a_managed_identity_is_system_or_a_client_id_and_its_endpoint_may_be_imds() {
        let mut settings = Settings::default();
        settings.set("managed_identity", Some("System")).unwrap();
        assert_eq!(settings.managed_identity, Some(ManagedIdentity::SystemAssigned));
        settings.set("managed_identity", Some("0A1B2C3D-0000-4000-8000-00000000000F")).unwrap();
        let client_id = "0a1b2c3d-0000-4000-8000-00000000000f".to_owned();
        assert_eq!(settings.managed_identity, Some(ManagedIdentity::UserAssigned { client_id }));
        let err = settings.set("managed_identity", Some("sytem")).unwrap_err();
        assert!(err.message().contains("'system' or the client id (a GUID)"), "{err}");

        for imds in ["http://169.254.169.254/metadata/identity/oauth2/token", "http://[fe80::1]/token"] {
            assert!(settings.set("managed_identity_endpoint", Some(imds)).is_ok(), "{imds}");
            assert!(settings.set("base_url", Some(imds)).is_err(), "{imds} is no API root");
        }
        let err = settings.set("managed_identity_endpoint", Some("http://10.0.0.1/token")).unwrap_err();
        assert!(err.message().contains("169.254.169.254"), "{err}");
    }

    #[test]
    fn a_client_assertion_must_look_like_a_jwt_and_is_never_repeated() {
        let mut settings = Settings::default();
        for not_a_jwt in ["3F2504E04F8911D39A0C0305E82C3301", "/etc/app.pem", "a.b", "a..c", "a.b.c.d", "a.b+.c"] {
            let err = settings.set("client_assertion", Some(not_a_jwt)).unwrap_err();
            assert!(err.message().contains("signed JWT") && !err.message().contains(not_a_jwt), "{err}");
        }
        settings.set("client_assertion", Some(" aGVhZA.Y2xhaW1z.c2ln\n")).unwrap();
        assert_eq!(settings.client_assertion.unwrap().expose(), "aGVhZA.Y2xhaW1z.c2ln");
    }

    #[test]
    fn zero_timeout_means_none() {
        let mut settings = Settings::default();
        settings.set("timeout_ms", Some("0")).unwrap();
        assert_eq!(settings.timeout, None);
    }

    #[test]
    fn a_settings_snapshot_does_not_copy_its_secrets() {
        let mut settings = Settings::default();
        settings.set("client_secret", Some("hunter22-secret")).unwrap();
        let snapshot = settings.clone();
        let address = |settings: &Settings| settings.client_secret.as_ref().map(|secret| secret.expose().as_ptr());
        assert_eq!(address(&snapshot), address(&settings));
    }

    #[test]
    fn each_key_is_listed_once_and_its_documented_default_is_the_default() {
        for (i, option) in OPTIONS.iter().enumerate() {
            assert!(OPTIONS[..i].iter().all(|earlier| earlier.name != option.name), "{} twice", option.name);
            assert!(!option.doc.is_empty() && !option.doc.contains('\n'), "{}: one line", option.name);
            if let Some(default) = option.default {
                let mut settings = Settings::default();
                settings.set(option.name, Some(default)).unwrap_or_else(|e| panic!("{}: {e}", option.name));
                assert_eq!(settings, Settings::default(), "{}'s documented default is not its default", option.name);
            }
        }
    }

    #[test]
    fn the_cloud_option_lists_every_cloud() {
        let doc = option("cloud").unwrap().doc;
        let listed = doc.rsplit_once(": ").unwrap().1.replace(" or ", ", ");
        assert_eq!(listed.split(", ").collect::<Vec<_>>(), Cloud::NAMES, "{doc}");
    }

    /// A file of the repository, as text.
    fn repository_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Words as a reader sees them: runs of white space as one space.
    fn words(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The option list as `defender_client_set`'s comment gives it: one item a key.
    fn option_list() -> String {
        OPTIONS
            .iter()
            .map(|option| format!("- `{}`: {}", option.name, option.description()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_header_lists_every_option_as_the_table_describes_it() {
        let header = repository_file("include/defender.h");
        let marker = " * Keys (`defender_option_name` and `defender_option_doc` list them at run time):\n";
        let start = header.find(marker).expect("defender_client_set's comment introduces its keys") + marker.len();
        let end = start + header[start..].find(" *\n").expect("a blank comment line ends the list");
        let listed: Vec<&str> = header[start..end].lines().map(|line| line.trim_start_matches(" * ")).collect();
        assert_eq!(
            words(&listed.join(" ")),
            words(&option_list()),
            "the option list in src/ffi/client.rs (defender_client_set) should read, wrapped at 100 columns:\n{}",
            option_list()
        );
    }

    /// The quoted words that follow each `opening` in `text`: `Set("cloud"` gives `cloud`.
    fn quoted_after<'a>(text: &'a str, opening: &str) -> Vec<&'a str> {
        text.split(opening).skip(1).filter_map(|rest| rest.split_once('"').map(|(word, _)| word)).collect()
    }

    #[test]
    fn the_powershell_help_lists_the_keys_option_takes_and_the_bindings_set_only_real_keys() {
        let connect = repository_file("powershell/src/Commands/ConnectDefenderApiCommand.cs");
        let by_parameter =
            &connect[connect.find("SetByParameter =").expect("Connect's table of keys that parameters set")..];
        let by_parameter = quoted_after(&by_parameter[..by_parameter.find("};").unwrap()], "{ \"");
        let names: Vec<&str> = OPTIONS.iter().map(|option| option.name).collect();
        for key in &by_parameter {
            assert!(names.contains(key), "Connect-DefenderApi refuses -Option {key}, which is no option");
        }
        let expected: Vec<&str> = names.iter().copied().filter(|name| !by_parameter.contains(name)).collect();

        let help = repository_file("powershell/DefenderPackage/en-US/DefenderPackage.dll-Help.xml");
        let descriptions: Vec<&str> = help.split("<maml:name>Option</maml:name>").skip(1).collect();
        assert!(descriptions.len() >= 2, "the MAML help describes -Option");
        for description in descriptions {
            let listed = description.split_once("as key = value: ").expect("-Option's help lists the keys").1;
            let listed = words(listed.split_once(". ").unwrap().0);
            assert_eq!(
                listed.split(", ").collect::<Vec<_>>(),
                expected,
                "-Option's help should list: {}",
                expected.join(", ")
            );
        }

        let binding = repository_file("dotnet/Defender.Interop/Defender.cs");
        let mut module = String::new();
        for folder in ["powershell/src", "powershell/src/Commands"] {
            let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|extension| extension == "cs") {
                    module += &std::fs::read_to_string(path).unwrap();
                }
            }
        }
        for source in [&binding, &module] {
            for opening in [".Set(\"", ".SetSecret(\"", "options[\""] {
                for key in quoted_after(source, opening) {
                    assert!(names.contains(&key), "the bindings set '{key}', which is no option");
                }
            }
        }
    }

    #[test]
    fn the_c_api_guide_has_a_row_for_every_option_as_the_table_describes_it() {
        let guide = repository_file("docs/c-api.md");
        let header = "| key | what it does, what it takes (default) |\n| --- | --- |\n";
        let start = guide.find(header).expect("docs/c-api.md has the option table") + header.len();
        let rows: Vec<&str> = guide[start..].lines().take_while(|line| line.starts_with('|')).collect();
        let expected: Vec<String> =
            OPTIONS.iter().map(|option| format!("| `{}` | {} |", option.name, option.description())).collect();
        assert_eq!(rows, expected, "the option table in docs/c-api.md should read:\n{}", expected.join("\n"));
    }
}
