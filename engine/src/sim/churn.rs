//! Churn: peers leaving, joining and freezing during a run, and the origin leaving early.
//!
//! Syntax (comma-separated, any order, all optional):
//! `leave=F` — a fraction `F` (0..1) of the initial peers leave at uniformly random times in the
//! churn window; `join=F` — `F·N` extra peers join at uniformly random times in the window;
//! `freeze=F` — a fraction `F` of the initial peers freeze at uniformly random times in the
//! window: from then on the peer sends and reads nothing, its connections stay open and no one
//! is told (a SIGSTOPped process, or a host gone without a FIN); blocks its peers were sending
//! it stall with the rest of their queue, as behind a zero TCP window;
//! `origin-leave` — the origin disconnects as soon as the honest peers together hold every piece;
//! `window=DURATION` — the churn window `[0, DURATION]` (default: `D_p2p`).
//! Example: `leave=0.1,join=0.1,origin-leave`, `freeze=0.125`.
//!
//! Leavers, freezers and liars are disjoint; frozen peers are not expected to complete. A
//! leaving or freezing peer that holds the last copy of some piece in the swarm after the origin has left
//! waits until another peer has that piece (otherwise completion would be impossible, and the
//! run would measure the churn generator rather than the swarm).

use std::time::Duration;

use super::units::parse_duration_ns;
use super::SimError;

/// What churn a run has. The default is none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChurnSpec {
    /// Fraction of the initial peers that leave during the window.
    pub leave_fraction: f64,
    /// Extra peers joining during the window, as a fraction of the initial peer count.
    pub join_fraction: f64,
    /// Fraction of the initial peers that freeze (stop sending and reading, stay connected)
    /// during the window.
    pub freeze_fraction: f64,
    /// Whether the origin leaves once the swarm holds a full copy.
    pub origin_leaves: bool,
    /// Length of the churn window; `None` means `D_p2p`.
    pub window: Option<Duration>,
}

impl ChurnSpec {
    /// Whether this spec changes anything.
    pub fn is_none(&self) -> bool {
        self.leave_fraction == 0.0
            && self.join_fraction == 0.0
            && self.freeze_fraction == 0.0
            && !self.origin_leaves
    }

    /// Parses the syntax in the module docs.
    ///
    /// # Errors
    /// [`SimError::BadChurn`] naming the offending part.
    pub fn parse(spec: &str) -> Result<Self, SimError> {
        let mut out = Self::default();
        let bad = |part: &str, why: &str| SimError::BadChurn(format!("{part:?}: {why}"));
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let fraction = || -> Result<f64, SimError> {
                let f: f64 = value
                    .parse()
                    .map_err(|_| bad(part, "expected a fraction"))?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(bad(part, "fraction must be within 0..=1"));
                }
                Ok(f)
            };
            match key {
                "leave" => out.leave_fraction = fraction()?,
                "join" => out.join_fraction = fraction()?,
                "freeze" => out.freeze_fraction = fraction()?,
                "origin-leave" if value.is_empty() => out.origin_leaves = true,
                "window" => {
                    let ns = parse_duration_ns(value).map_err(|e| bad(part, &e.to_string()))?;
                    out.window = Some(Duration::from_nanos(ns));
                }
                _ => {
                    return Err(bad(
                        part,
                        "expected leave=F, join=F, freeze=F, origin-leave or window=DURATION",
                    ))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_syntax() {
        let spec =
            ChurnSpec::parse("leave=0.1,join=0.2,freeze=0.125,origin-leave,window=2s").unwrap();
        assert_eq!(
            spec,
            ChurnSpec {
                leave_fraction: 0.1,
                join_fraction: 0.2,
                freeze_fraction: 0.125,
                origin_leaves: true,
                window: Some(Duration::from_secs(2)),
            }
        );
        assert!(ChurnSpec::parse("").unwrap().is_none());
        assert!(!ChurnSpec::parse("freeze=0.1").unwrap().is_none());
        assert!(ChurnSpec::parse("leave=2").is_err());
        assert!(ChurnSpec::parse("stay=0.1").is_err());
        assert!(ChurnSpec::parse("origin-leave=1").is_err());
    }
}
