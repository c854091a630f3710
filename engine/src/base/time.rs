//! Time as the sans-IO layers see it (core, the simulator): an opaque monotonic instant
//! passed in by the driver.
//!
//! The core never reads a clock. The driver (the io_uring node, the simulator, a unit
//! test) chooses an epoch and passes [`Time`] values measured from it; the simulator
//! starts at [`Time::ZERO`].

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time: nanoseconds since the driver's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The driver's epoch (the simulator starts here).
    pub const ZERO: Time = Time(0);
    /// The farthest representable instant, used as "never".
    pub const MAX: Time = Time(u64::MAX);

    /// `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Time(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `secs` seconds after the epoch; negative or NaN values clamp to [`Time::ZERO`],
    /// values beyond ~584 years clamp to [`Time::MAX`].
    pub fn from_secs_f64(secs: f64) -> Self {
        // `as` saturates for floats (NaN -> 0), which is exactly the clamping documented.
        Time((secs * 1e9) as u64)
    }

    /// Seconds since the epoch.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturating: adding to a time near [`Time::MAX`] stays at [`Time::MAX`].
    fn add(self, rhs: Duration) -> Time {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(nanos))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_nanos(5);
        assert_eq!((t + Duration::from_nanos(7)).as_nanos(), 12);
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(
            t.saturating_duration_since(Time::from_nanos(9)),
            Duration::ZERO
        );
        assert_eq!(
            Time::from_nanos(9).saturating_duration_since(t),
            Duration::from_nanos(4)
        );
    }

    #[test]
    fn seconds_round_trip() {
        let t = Time::from_secs_f64(1.5);
        assert_eq!(t.as_nanos(), 1_500_000_000);
        assert!((t.as_secs_f64() - 1.5).abs() < 1e-12);
        assert_eq!(Time::from_secs_f64(-3.0), Time::ZERO);
    }
}
