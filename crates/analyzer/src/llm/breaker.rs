//! A circuit breaker over model calls.

use std::time::Duration;

/// A circuit breaker over model calls: after `threshold` consecutive
/// failures the model is skipped for `open_for`, then one call probes it.
/// While open, answers are rules only at once instead of waiting out a
/// timeout on every snapshot.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    pub(super) state: std::sync::Mutex<(u32, Option<std::time::Instant>)>,
}

impl Breaker {
    /// Opens after `threshold` failures in a row, for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold,
            open_for,
            state: std::sync::Mutex::new((0, None)),
        }
    }

    /// Whether a call may go out at `now`.
    pub fn allow(&self, now: std::time::Instant) -> bool {
        // A poisoned lock (a panic mid-update) fails closed: no model call;
        // the rules still answer.
        let Ok(state) = self.state.lock() else {
            return false;
        };
        state.1.is_none_or(|until| now >= until)
    }

    /// Records a call's result; returns true while the breaker is open.
    pub fn record(&self, ok: bool, now: std::time::Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        if ok {
            *state = (0, None);
            return false;
        }
        state.0 = state.0.saturating_add(1);
        if state.0 >= self.threshold {
            state.1 = Some(now + self.open_for);
        }
        state.1.is_some()
    }
}
