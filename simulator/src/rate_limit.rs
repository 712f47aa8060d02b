//! The API's documented rate limits: sliding windows of a minute and an hour per
//! (tenant, client id) and class of call, in simulated time.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::clock::SimTime;
use crate::config::{RateLimit, RateLimits};
use crate::state::Caller;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Calls limited together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LimitClass {
    GetPackageUri,
    Other,
    RunLiveResponse,
    LiveResponseLink,
    Library,
}

impl LimitClass {
    fn limit(self, limits: &RateLimits) -> RateLimit {
        match self {
            LimitClass::GetPackageUri => limits.get_package_uri,
            LimitClass::Other => limits.other,
            LimitClass::RunLiveResponse => limits.run_live_response,
            LimitClass::LiveResponseLink => limits.live_response_link,
            LimitClass::Library => limits.library,
        }
    }
}

#[derive(Default)]
pub(crate) struct RateLimiter {
    /// When each admitted call of the last hour arrived, oldest first.
    admitted: HashMap<(Caller, LimitClass), VecDeque<SimTime>>,
}

impl RateLimiter {
    /// Admits the call and counts it, or answers the whole simulated seconds until a slot frees
    /// (at least 1). Refused calls are not counted.
    pub(crate) fn admit(
        &mut self,
        caller: &Caller,
        class: LimitClass,
        limits: &RateLimits,
        now: SimTime,
    ) -> Result<(), u64> {
        let limit = class.limit(limits);
        let admitted = self.admitted.entry((caller.clone(), class)).or_default();
        while admitted.front().is_some_and(|&at| now - at >= HOUR) {
            admitted.pop_front();
        }
        let wait = [(MINUTE, limit.per_minute), (HOUR, limit.per_hour)]
            .into_iter()
            .filter_map(|(window, allowed)| {
                let first_in_window = admitted.partition_point(|&at| now - at >= window);
                let in_window = admitted.len() - first_in_window;
                let over_by = in_window.checked_sub(allowed as usize)?;
                // The call that has to leave the window before another fits.
                let leaving = admitted[first_in_window + over_by];
                Some(window - (now - leaving))
            })
            .max();
        match wait {
            Some(wait) => Err(whole_seconds_rounded_up(wait).max(1)),
            None => {
                admitted.push_back(now);
                Ok(())
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.admitted.clear();
    }
}

fn whole_seconds_rounded_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn at(seconds: u64) -> SimTime {
        SimTime::default() + Duration::from_secs(seconds)
    }

    fn caller(client_id: &str) -> Caller {
        Caller { tenant_id: "tenant".into(), client_id: client_id.into() }
    }

    #[test]
    fn the_minute_window_slides_and_refusals_do_not_count() {
        let limits = Config::default().rate_limits;
        let mut limiter = RateLimiter::default();
        let app = caller("app");
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(0)), Ok(()));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(10)), Ok(()));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(20)), Err(40));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(59)), Err(1));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(60)), Ok(()));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(61)), Err(9));
        // Other classes and other apps have their own windows.
        assert_eq!(limiter.admit(&app, LimitClass::Other, &limits, at(61)), Ok(()));
        let other_app = caller("other");
        assert_eq!(limiter.admit(&other_app, LimitClass::GetPackageUri, &limits, at(61)), Ok(()));
    }

    #[test]
    fn the_hour_window_counts_too() {
        let limits =
            RateLimits { get_package_uri: RateLimit { per_minute: 2, per_hour: 3 }, ..Config::default().rate_limits };
        let mut limiter = RateLimiter::default();
        let app = caller("app");
        for seconds in [0, 100, 200] {
            assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(seconds)), Ok(()));
        }
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(300)), Err(3300));
        assert_eq!(limiter.admit(&app, LimitClass::GetPackageUri, &limits, at(3600)), Ok(()));
    }
}
