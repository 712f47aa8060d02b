//! The settings a running simulator can change (`/_sim/config`), and byte sizes such as `8MiB`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::ControlError;
use crate::chaos::ChaosConfig;
use crate::package::MIN_PACKAGE_SIZE;

/// The scope the real service's tokens are asked for.
pub const DEFAULT_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

/// The simulator's settings; `GET /_sim/config` answers them in this shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Simulated time runs this many times faster than real time.
    pub clock_scale: f64,
    /// Lifetime of issued access tokens, in real seconds.
    pub token_lifetime_secs: u64,
    /// Lifetime of download links, in real seconds.
    pub link_ttl_secs: u64,
    /// Package size of actions that do not set their own, in bytes.
    pub package_size: u64,
    /// How long a collection started through the API stays Pending and InProgress.
    pub collect_schedule: Schedule,
    /// Whether the rate limits are enforced.
    pub rate_limit: bool,
    pub rate_limits: RateLimits,
    /// Whether downloads carry `Content-MD5`.
    pub content_md5: bool,
    /// Whether getPackageUri wraps its link in literal double quotes.
    pub quoted_links: bool,
    /// Scopes the token endpoint accepts; managed identity accepts them without `/.default`.
    pub accepted_scopes: Vec<String>,
    /// Most entities in one page of a list (`GET /api/machines`, `/api/machineactions`); the
    /// service's is 10000. Small values make tests cross pages.
    pub page_size: usize,
    /// The root that `@odata.nextLink`s point at; empty: the simulator's own `base_url`. Lets a
    /// test check that clients follow links only to the API host.
    pub next_link_base: String,
    /// How long a live response session stays Pending and InProgress once its device is online.
    #[serde(default = "default_live_response_schedule")]
    pub live_response_schedule: Schedule,
    /// Size of the file a GetFile command brings back, in bytes.
    #[serde(default = "default_live_response_file_size")]
    pub live_response_file_size: u64,
    /// Whether GetFile results are stored gzip-compressed (`Content-Encoding: gzip`), as the
    /// service may store them.
    #[serde(default)]
    pub gzip_results: bool,
    /// Lifetime of a live response result's SAS link, in real seconds (the service's: 30 minutes).
    #[serde(default = "default_result_link_ttl_secs")]
    pub result_link_ttl_secs: u64,
    /// Live response sessions running at once in a tenant; one more is refused with 429.
    #[serde(default = "default_max_live_response_sessions")]
    pub max_live_response_sessions: usize,
    /// Chaos mode: a fault for some requests, drawn from a seeded generator; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosConfig>,
}

fn default_live_response_schedule() -> Schedule {
    Schedule { pending_secs: 2, in_progress_secs: 10 }
}

fn default_live_response_file_size() -> u64 {
    64 << 10
}

fn default_result_link_ttl_secs() -> u64 {
    30 * 60
}

fn default_max_live_response_sessions() -> usize {
    25
}

fn default_run_live_response_limit() -> RateLimit {
    RateLimit { per_minute: 10, per_hour: 600 }
}

fn default_other_limit() -> RateLimit {
    RateLimit { per_minute: 100, per_hour: 1500 }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            clock_scale: 1.0,
            token_lifetime_secs: 3600,
            link_ttl_secs: 300,
            package_size: 8 << 20,
            collect_schedule: Schedule { pending_secs: 5, in_progress_secs: 30 },
            rate_limit: true,
            rate_limits: RateLimits {
                get_package_uri: RateLimit { per_minute: 2, per_hour: 120 },
                other: default_other_limit(),
                run_live_response: default_run_live_response_limit(),
                live_response_link: default_other_limit(),
                library: default_other_limit(),
            },
            content_md5: false,
            quoted_links: false,
            accepted_scopes: vec![DEFAULT_SCOPE.to_owned()],
            page_size: MAX_PAGE_SIZE,
            next_link_base: String::new(),
            live_response_schedule: default_live_response_schedule(),
            live_response_file_size: default_live_response_file_size(),
            gzip_results: false,
            result_link_ttl_secs: default_result_link_ttl_secs(),
            max_live_response_sessions: default_max_live_response_sessions(),
            chaos: None,
        }
    }
}

/// The largest page, and `$top`, the service allows.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// How long an action stays Pending, then InProgress, in simulated seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub pending_secs: u64,
    pub in_progress_secs: u64,
}

/// Requests allowed per (tenant, client id) in any sliding minute and hour of simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub per_hour: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// `GET /api/machineactions/{id}/getPackageUri`.
    pub get_package_uri: RateLimit,
    /// Every other API call.
    pub other: RateLimit,
    /// `POST /api/machines/{id}/runliveresponse` (10 a minute).
    #[serde(default = "default_run_live_response_limit")]
    pub run_live_response: RateLimit,
    /// `GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=N)`.
    #[serde(default = "default_other_limit")]
    pub live_response_link: RateLimit,
    /// `/api/libraryfiles`: upload, list, delete.
    #[serde(default = "default_other_limit")]
    pub library: RateLimit,
}

/// A partial update of [`Config`]: `POST /_sim/config`. Absent fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_ttl_secs: Option<u64>,
    /// A number of bytes, or a string such as `"64KiB"`.
    #[serde(default, deserialize_with = "optional_byte_size", skip_serializing_if = "Option::is_none")]
    pub package_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_schedule: Option<Schedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_links: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link_base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_response_schedule: Option<Schedule>,
    /// A number of bytes, or a string such as `"300MiB"`.
    #[serde(default, deserialize_with = "optional_byte_size", skip_serializing_if = "Option::is_none")]
    pub live_response_file_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gzip_results: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_link_ttl_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_live_response_sessions: Option<usize>,
    /// `{...}` turns chaos mode on (or changes it, starting its generator again), `null` off.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub chaos: Option<Option<ChaosConfig>>,
}

/// A field that is present, `null` or not: `Some` of its value.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Replaces the limits of the classes it names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_package_uri: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_live_response: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_response_link: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<RateLimit>,
}

impl Config {
    /// This configuration with `patch` applied, or why the result would not be valid.
    pub fn patched(&self, patch: ConfigPatch) -> Result<Config, ControlError> {
        let mut config = self.clone();
        let ConfigPatch {
            clock_scale,
            token_lifetime_secs,
            link_ttl_secs,
            package_size,
            collect_schedule,
            rate_limit,
            rate_limits,
            content_md5,
            quoted_links,
            accepted_scopes,
            page_size,
            next_link_base,
            live_response_schedule,
            live_response_file_size,
            gzip_results,
            result_link_ttl_secs,
            max_live_response_sessions,
            chaos,
        } = patch;
        set(&mut config.clock_scale, clock_scale);
        set(&mut config.token_lifetime_secs, token_lifetime_secs);
        set(&mut config.link_ttl_secs, link_ttl_secs);
        set(&mut config.package_size, package_size);
        set(&mut config.collect_schedule, collect_schedule);
        set(&mut config.rate_limit, rate_limit);
        if let Some(limits) = rate_limits {
            set(&mut config.rate_limits.get_package_uri, limits.get_package_uri);
            set(&mut config.rate_limits.other, limits.other);
            set(&mut config.rate_limits.run_live_response, limits.run_live_response);
            set(&mut config.rate_limits.live_response_link, limits.live_response_link);
            set(&mut config.rate_limits.library, limits.library);
        }
        set(&mut config.content_md5, content_md5);
        set(&mut config.quoted_links, quoted_links);
        set(&mut config.accepted_scopes, accepted_scopes);
        set(&mut config.page_size, page_size);
        set(&mut config.next_link_base, next_link_base);
        set(&mut config.live_response_schedule, live_response_schedule);
        set(&mut config.live_response_file_size, live_response_file_size);
        set(&mut config.gzip_results, gzip_results);
        set(&mut config.result_link_ttl_secs, result_link_ttl_secs);
        set(&mut config.max_live_response_sessions, max_live_response_sessions);
        set(&mut config.chaos, chaos);
        config.validate()?;
        Ok(config)
    }

    pub(crate) fn validate(&self) -> Result<(), ControlError> {
        if !(self.clock_scale.is_finite() && self.clock_scale > 0.0) {
            return Err(ControlError::invalid(format!(
                "clock_scale must be a positive number, not {}",
                self.clock_scale
            )));
        }
        if self.token_lifetime_secs == 0 {
            return Err(ControlError::invalid("token_lifetime_secs must be at least 1"));
        }
        validate_package_size(self.package_size)?;
        if let Some(chaos) = &self.chaos {
            chaos.validate()?;
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ControlError::invalid(format!(
                "page_size must be 1 to {MAX_PAGE_SIZE}, not {}",
                self.page_size
            )));
        }
        let limits = &self.rate_limits;
        for (class, limit) in [
            ("get_package_uri", limits.get_package_uri),
            ("other", limits.other),
            ("run_live_response", limits.run_live_response),
            ("live_response_link", limits.live_response_link),
            ("library", limits.library),
        ] {
            if limit.per_minute == 0 || limit.per_hour == 0 {
                return Err(ControlError::invalid(format!(
                    "rate_limits.{class}: per_minute and per_hour must be at least 1 (turn rate_limit off instead)"
                )));
            }
        }
        if self.result_link_ttl_secs == 0 {
            return Err(ControlError::invalid("result_link_ttl_secs must be at least 1"));
        }
        if self.max_live_response_sessions == 0 {
            return Err(ControlError::invalid("max_live_response_sessions must be at least 1"));
        }
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

pub(crate) fn validate_package_size(size: u64) -> Result<(), ControlError> {
    if size < MIN_PACKAGE_SIZE {
        return Err(ControlError::invalid(format!(
            "package_size must be at least {MIN_PACKAGE_SIZE} bytes, not {size}"
        )));
    }
    Ok(())
}

/// Parses a byte size: a number of bytes, optionally followed by `B`, `KiB`, `MiB`, `GiB`, `TiB`
/// (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000); units ignore case.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| format!("'{text}' is not a size such as 4096, 64KiB or 8MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ));
        }
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("'{text}' is too large"))
}

/// Deserializes an optional byte size given as a number or as a string for [`parse_byte_size`].
pub(crate) fn optional_byte_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ByteSize {
        Bytes(u64),
        Text(String),
    }
    match Option::<ByteSize>::deserialize(deserializer)? {
        None => Ok(None),
        Some(ByteSize::Bytes(bytes)) => Ok(Some(bytes)),
        Some(ByteSize::Text(text)) => parse_byte_size(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("123"), Ok(123));
        assert_eq!(parse_byte_size("64KiB"), Ok(65536));
        assert_eq!(parse_byte_size("8mib"), Ok(8 << 20));
        assert_eq!(parse_byte_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_byte_size("2 MB"), Ok(2_000_000));
        assert!(parse_byte_size("8 parsecs").is_err());
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("99999999999TiB").is_err());
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_is_validated() {
        let patch: ConfigPatch =
            serde_json::from_str(r#"{"package_size":"64KiB","rate_limits":{"other":{"per_minute":5,"per_hour":10}}}"#)
                .unwrap();
        let config = Config::default().patched(patch).unwrap();
        assert_eq!(config.package_size, 65536);
        assert_eq!(config.rate_limits.other.per_minute, 5);
        assert_eq!(config.rate_limits.get_package_uri, Config::default().rate_limits.get_package_uri);

        let too_small = ConfigPatch { package_size: Some(100), ..ConfigPatch::default() };
        assert!(Config::default().patched(too_small).is_err());
        assert!(serde_json::from_str::<ConfigPatch>(r#"{"clock_scal":2}"#).is_err());
    }
}
