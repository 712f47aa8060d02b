//! Chaos mode: a fault for some requests, drawn from a seeded generator, so that a client meets
//! every transient fault the simulator has, at random, as on a bad day of a real service; but at
//! most `max_per_action` for each action (and at most one damaged byte and two expired links), so
//! that the retries a client documents always win in the end.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ControlError;
use crate::faults::Fault;
use crate::routes::RouteKind;

/// `chaos` in the configuration (`POST /_sim/config`, `--chaos SEED`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosConfig {
    /// The generator's seed: the same seed and the same requests in the same order draw the same
    /// faults.
    pub seed: u64,
    /// The share of requests (to `endpoints`) that get a fault, 0 to 1.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// At most this many faults for the requests about one action (its API calls and downloads
    /// together; requests about no action count by endpoint).
    #[serde(default = "default_max_per_action")]
    pub max_per_action: u32,
    /// The faults drawn from; default: all of them.
    #[serde(default = "ChaosKind::all")]
    pub kinds: Vec<ChaosKind>,
    /// The endpoints that get faults; default: `download`, `get_package_uri` and `machine_action`.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<RouteKind>,
    /// How long a `stall` keeps the body silent, in real milliseconds.
    #[serde(default = "default_stall_ms")]
    pub stall_ms: u64,
    /// The longest `delay`, in real milliseconds.
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
    /// The pace of a `slow_body`, in bytes a second.
    #[serde(default = "default_slow_bytes_per_sec")]
    pub slow_bytes_per_sec: u64,
}

fn default_rate() -> f64 {
    0.2
}

fn default_max_per_action() -> u32 {
    3
}

fn default_endpoints() -> Vec<RouteKind> {
    vec![RouteKind::Download, RouteKind::GetPackageUri, RouteKind::MachineAction]
}

fn default_stall_ms() -> u64 {
    1000
}

fn default_delay_ms() -> u64 {
    200
}

fn default_slow_bytes_per_sec() -> u64 {
    4 << 20
}

impl ChaosConfig {
    /// Chaos with `seed` and the defaults.
    pub fn seeded(seed: u64) -> ChaosConfig {
        ChaosConfig {
            seed,
            rate: default_rate(),
            max_per_action: default_max_per_action(),
            kinds: ChaosKind::all(),
            endpoints: default_endpoints(),
            stall_ms: default_stall_ms(),
            delay_ms: default_delay_ms(),
            slow_bytes_per_sec: default_slow_bytes_per_sec(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ControlError> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(ControlError::invalid(format!("chaos.rate must be 0 to 1, not {}", self.rate)));
        }
        if self.kinds.is_empty() || self.endpoints.is_empty() {
            return Err(ControlError::invalid("chaos.kinds and chaos.endpoints must name at least one"));
        }
        if self.slow_bytes_per_sec == 0 {
            return Err(ControlError::invalid("chaos.slow_bytes_per_sec must be at least 1"));
        }
        Ok(())
    }
}

/// The faults chaos draws from: the simulator's transient ones (the others, `not_found`,
/// `answer`, `page` and `raw`, are answers a client must take as final).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChaosKind {
    /// 500, 502, 503 or 504.
    Status,
    /// 429 with `Retry-After: 1`, as seconds or as an HTTP date.
    RateLimit,
    Drop,
    Delay,
    CutAfter,
    ShortBody,
    CorruptByte,
    Stall,
    SlowBody,
    ExpiredLink,
    NoRanges,
    NoLength,
}

impl ChaosKind {
    pub fn all() -> Vec<ChaosKind> {
        use ChaosKind::*;
        vec![
            Status,
            RateLimit,
            Drop,
            Delay,
            CutAfter,
            ShortBody,
            CorruptByte,
            Stall,
            SlowBody,
            ExpiredLink,
            NoRanges,
            NoLength,
        ]
    }

    fn download_only(self) -> bool {
        !matches!(self, ChaosKind::Status | ChaosKind::RateLimit | ChaosKind::Drop | ChaosKind::Delay)
    }
}

/// What chaos has done to the requests about one action.
#[derive(Default)]
struct Dealt {
    faults: u32,
    corrupted: u32,
    expired: u32,
}

/// The generator and what it has dealt.
pub(crate) struct Chaos {
    config: ChaosConfig,
    random: fastrand::Rng,
    dealt: HashMap<String, Dealt>,
}

impl Chaos {
    pub(crate) fn new(config: ChaosConfig) -> Chaos {
        Chaos { random: fastrand::Rng::with_seed(config.seed), config, dealt: HashMap::new() }
    }

    /// The fault for a request to `endpoint` about `action_id` (for a download, of a package of
    /// `package_size` bytes), or none.
    pub(crate) fn pick(
        &mut self,
        endpoint: RouteKind,
        action_id: Option<&str>,
        package_size: Option<u64>,
    ) -> Option<Fault> {
        let config = &self.config;
        if !config.endpoints.contains(&endpoint) || self.random.f64() >= config.rate {
            return None;
        }
        let key = action_id.map_or_else(|| format!("{endpoint:?}"), str::to_owned);
        let dealt = self.dealt.entry(key).or_default();
        if dealt.faults >= config.max_per_action {
            return None;
        }
        let download = endpoint == RouteKind::Download;
        let size = package_size.unwrap_or(64 << 10).max(1);
        let candidates: Vec<ChaosKind> = config
            .kinds
            .iter()
            .copied()
            .filter(|kind| download || !kind.download_only())
            // A second damaged byte, or a third refused link in a row, ends a download by design.
            .filter(|kind| *kind != ChaosKind::CorruptByte || dealt.corrupted == 0)
            .filter(|kind| *kind != ChaosKind::ExpiredLink || dealt.expired < 2)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let random = &mut self.random;
        let fault = match candidates[random.usize(..candidates.len())] {
            ChaosKind::Status => {
                Fault::Status { status: [500, 502, 503, 504][random.usize(..4)], code: None, retry_after_secs: None }
            }
            ChaosKind::RateLimit => Fault::RateLimit { retry_after_secs: 1, http_date: random.bool() },
            ChaosKind::Drop => Fault::Drop,
            ChaosKind::Delay => Fault::Delay { ms: random.u64(0..=config.delay_ms) },
            ChaosKind::CutAfter => Fault::CutAfter { bytes: random.u64(0..size) },
            ChaosKind::ShortBody => Fault::ShortBody { bytes: random.u64(0..size) },
            ChaosKind::CorruptByte => {
                dealt.corrupted += 1;
                Fault::CorruptByte { offset: random.u64(0..size) }
            }
            ChaosKind::Stall => Fault::Stall { after_bytes: random.u64(0..size), ms: config.stall_ms },
            ChaosKind::SlowBody => Fault::SlowBody { bytes_per_sec: config.slow_bytes_per_sec },
            ChaosKind::ExpiredLink => {
                dealt.expired += 1;
                Fault::ExpiredLink
            }
            ChaosKind::NoRanges => Fault::NoRanges,
            ChaosKind::NoLength => Fault::NoLength,
        };
        dealt.faults += 1;
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(config: &ChaosConfig, requests: usize) -> Vec<Option<Fault>> {
        let mut chaos = Chaos::new(config.clone());
        (0..requests)
            .map(|index| chaos.pick(RouteKind::Download, Some(&format!("action-{}", index % 50)), Some(100_000)))
            .collect()
    }

    #[test]
    fn the_same_seed_draws_the_same_faults_within_the_limits_per_action() {
        let config = ChaosConfig { rate: 0.5, ..ChaosConfig::seeded(7) };
        let first = draws(&config, 2000);
        assert_eq!(first, draws(&config, 2000));
        assert_ne!(first, draws(&ChaosConfig { seed: 8, ..config.clone() }, 2000));
        // 50 actions, 3 faults each at most, and every kind drawn.
        let faults: Vec<&Fault> = first.iter().flatten().collect();
        assert_eq!(faults.len(), 150);
        for kind in ChaosKind::all() {
            let name = serde_json::to_value(kind).unwrap();
            assert!(
                faults.iter().any(|fault| serde_json::to_value(fault).unwrap()["kind"] == name),
                "{kind:?} never drawn"
            );
        }
        let corrupted = faults.iter().filter(|fault| matches!(fault, Fault::CorruptByte { .. })).count();
        assert!(corrupted <= 50);
    }

    #[test]
    fn other_endpoints_get_only_the_faults_that_apply_to_them() {
        let mut chaos = Chaos::new(ChaosConfig { rate: 1.0, max_per_action: 1000, ..ChaosConfig::seeded(1) });
        for _ in 0..500 {
            let fault = chaos.pick(RouteKind::GetPackageUri, Some("a"), None).unwrap();
            assert!(
                matches!(fault, Fault::Status { .. } | Fault::RateLimit { .. } | Fault::Drop | Fault::Delay { .. }),
                "{fault:?}"
            );
        }
        assert_eq!(chaos.pick(RouteKind::Token, None, None), None, "not in endpoints");
    }
}
