//! Simulated time.
//!
//! Rate-limit windows, `Retry-After` and action schedules run on a clock that goes `scale` times
//! faster than real time, so a test can live through an hour of rate limits in a second. Token
//! lifetimes, link expiry and assertion times stay on the real clock: the library compares them
//! with the real clock too.

use std::ops::{Add, Sub};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::lock;

/// A point in simulated time, measured from the start of the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SimTime(Duration);

impl SimTime {
    pub(crate) fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;

    fn add(self, rhs: Duration) -> SimTime {
        SimTime(self.0 + rhs)
    }
}

impl Sub for SimTime {
    type Output = Duration;

    /// The simulated time from `rhs` to `self`; zero when `rhs` is later.
    fn sub(self, rhs: SimTime) -> Duration {
        self.0.saturating_sub(rhs.0)
    }
}

/// Real time and simulated time at the last change of scale: simulated time stays continuous
/// when a test changes the scale while the simulator runs.
#[derive(Clone, Copy)]
struct Anchor {
    real: Instant,
    simulated: SimTime,
    scale: f64,
}

pub(crate) struct SimClock {
    anchor: Mutex<Anchor>,
    started_wall: SystemTime,
}

impl SimClock {
    pub(crate) fn new(scale: f64) -> SimClock {
        SimClock {
            anchor: Mutex::new(Anchor { real: Instant::now(), simulated: SimTime::default(), scale }),
            started_wall: SystemTime::now(),
        }
    }

    pub(crate) fn now(&self) -> SimTime {
        let anchor = *lock(&self.anchor);
        anchor.simulated + anchor.real.elapsed().mul_f64(anchor.scale)
    }

    pub(crate) fn set_scale(&self, scale: f64) {
        let mut anchor = lock(&self.anchor);
        let real = Instant::now();
        let simulated = anchor.simulated + real.duration_since(anchor.real).mul_f64(anchor.scale);
        *anchor = Anchor { real, simulated, scale };
    }

    /// The calendar time of a simulated instant, for the timestamps in MachineActions: the real
    /// start time of the simulator plus the simulated time since then.
    pub(crate) fn wall_time(&self, at: SimTime) -> SystemTime {
        self.started_wall + at.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_time_runs_scale_times_faster_and_stays_continuous() {
        let clock = SimClock::new(1000.0);
        std::thread::sleep(Duration::from_millis(20));
        let fast = clock.now();
        assert!(fast >= SimTime(Duration::from_secs(20)), "{fast:?}");

        clock.set_scale(1.0);
        let after_change = clock.now();
        assert!(after_change >= fast, "time went backwards after a scale change");
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now() - after_change < Duration::from_secs(1));
    }
}
