//! Trends: a straight line fitted to a Prometheus range of one series, to
//! predict when it reaches a ceiling (a memory limit, a volume's capacity).
//!
//! A prediction is only as good as its series, so the fit refuses what it
//! cannot trust rather than guess:
//! - samples that are not finite or are negative are dropped;
//! - a **reset** (a drop below half the series' mean since the last one: a
//!   restarted container, a volume wiped; a spike falling back is none)
//!   starts the series again, and only what follows the last one is fitted;
//! - a **gap** (no sample for more than [`GAP_STEPS`] steps) is fitted
//!   across, but a series with fewer than half the samples its span should
//!   hold is refused;
//! - fewer than [`MIN_SAMPLES`] samples, a span shorter than the caller's
//!   minimum history, a flat or falling line: no trend.
//!
//! Whether the fit is good enough to act on (R², horizon) is the caller's
//! call; [`Fit`] carries everything it needs.

/// Fewest samples a trend is fitted to.
pub const MIN_SAMPLES: usize = 8;

/// A sample below this share of the mean since the last reset is a reset.
pub const RESET_RATIO: f64 = 0.5;

/// No sample for more than this many steps is a gap.
pub const GAP_STEPS: f64 = 3.0;

/// A least-squares line through one series since its last reset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Growth per second, in the series' unit.
    pub slope_per_sec: f64,
    /// Coefficient of determination, 0 to 1 (0 for a flat series).
    pub r_squared: f64,
    /// The line's value at the newest sample.
    pub current: f64,
    /// The newest sample as it was.
    pub last: f64,
    /// The newest sample's time (seconds since the epoch).
    pub last_at: f64,
    /// Seconds from the first fitted sample to the newest.
    pub history_secs: f64,
    /// Samples fitted.
    pub samples: usize,
    /// Resets seen in the range (only what follows the last is fitted).
    pub resets: usize,
    /// The longest stretch without a sample, seconds.
    pub longest_gap_secs: f64,
}

impl Fit {
    /// Seconds from the newest sample until the line reaches `ceiling`;
    /// `None` when it never does (flat or falling) or is already there.
    pub fn seconds_to(&self, ceiling: f64) -> Option<f64> {
        (self.slope_per_sec > 0.0 && self.current < ceiling && self.last < ceiling)
            .then(|| (ceiling - self.current) / self.slope_per_sec)
            .filter(|s| s.is_finite())
    }
}

/// Why a series has no trend.
#[derive(Debug, Clone, PartialEq)]
pub enum NoTrend {
    /// Fewer usable samples since the last reset than [`MIN_SAMPLES`].
    TooFewSamples(usize),
    /// The samples since the last reset span less than the minimum history.
    TooShort { history_secs: f64 },
    /// Fewer than half the samples the span should hold (gaps).
    TooSparse { samples: usize, expected: usize },
}

impl std::fmt::Display for NoTrend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooFewSamples(n) => write!(f, "{n} usable samples, fewer than {MIN_SAMPLES}"),
            Self::TooShort { history_secs } => {
                write!(f, "{history_secs:.0}s of history since its last reset")
            }
            Self::TooSparse { samples, expected } => write!(
                f,
                "{samples} samples where its span holds {expected}: too many gaps"
            ),
        }
    }
}

/// Fits `samples` (time in seconds since the epoch, value), taken every
/// `step_secs` and sorted by time, over at least `min_history_secs`.
///
/// # Errors
/// When the series cannot carry a trend (see [`NoTrend`]).
pub fn fit(samples: &[(f64, f64)], step_secs: f64, min_history_secs: f64) -> Result<Fit, NoTrend> {
    let usable = usable(samples);
    // A reset: a sample below half the mean of the samples since the last
    // one (a spike falling back is not a reset; a restart is).
    let (mut start, mut resets) = (0, 0);
    let (mut sum, mut count) = (0.0, 0.0);
    for (i, (_, v)) in usable.iter().enumerate() {
        if count > 0.0 && *v < RESET_RATIO * sum / count {
            (start, sum, count) = (i, 0.0, 0.0);
            resets += 1;
        }
        sum += v;
        count += 1.0;
    }
    line(&usable[start..], resets, step_secs, min_history_secs)
}

/// [`fit`] for a series that has no resets, only ups and downs (the share
/// of a day an HPA spent at its maximum: a quiet Sunday is no restart):
/// every usable sample is fitted.
///
/// # Errors
/// When the series cannot carry a trend (see [`NoTrend`]).
pub fn fit_all(
    samples: &[(f64, f64)],
    step_secs: f64,
    min_history_secs: f64,
) -> Result<Fit, NoTrend> {
    line(&usable(samples), 0, step_secs, min_history_secs)
}

/// The samples a fit can use: finite, not negative.
fn usable(samples: &[(f64, f64)]) -> Vec<(f64, f64)> {
    samples
        .iter()
        .copied()
        .filter(|(t, v)| t.is_finite() && v.is_finite() && *v >= 0.0)
        .collect()
}

/// The least-squares line through `points` (sorted by time), which follow
/// the series' `resets`-th reset.
fn line(
    points: &[(f64, f64)],
    resets: usize,
    step_secs: f64,
    min_history_secs: f64,
) -> Result<Fit, NoTrend> {
    if points.len() < MIN_SAMPLES {
        return Err(NoTrend::TooFewSamples(points.len()));
    }
    let (first_at, _) = points[0];
    let (last_at, last) = points[points.len() - 1];
    let history_secs = last_at - first_at;
    if history_secs < min_history_secs || history_secs <= 0.0 {
        return Err(NoTrend::TooShort { history_secs });
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a span over a positive step: a small positive count"
    )]
    let expected = (history_secs / step_secs.max(1.0)).floor() as usize + 1;
    if points.len() * 2 < expected {
        return Err(NoTrend::TooSparse {
            samples: points.len(),
            expected,
        });
    }
    let longest_gap_secs = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .fold(0.0, f64::max);

    // Least squares on times relative to the first sample, for precision.
    #[expect(clippy::cast_precision_loss, reason = "at most a few thousand samples")]
    let n = points.len() as f64;
    let mean_t = points.iter().map(|(t, _)| t - first_at).sum::<f64>() / n;
    let mean_v = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let (mut s_tt, mut s_tv, mut s_vv) = (0.0, 0.0, 0.0);
    for (t, v) in points {
        let (dt, dv) = (t - first_at - mean_t, v - mean_v);
        s_tt += dt * dt;
        s_tv += dt * dv;
        s_vv += dv * dv;
    }
    let slope_per_sec = s_tv / s_tt;
    let r_squared = if s_vv > 0.0 {
        (s_tv * s_tv / (s_tt * s_vv)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let current = (mean_v + slope_per_sec * (history_secs - mean_t)).max(0.0);
    Ok(Fit {
        slope_per_sec,
        r_squared,
        current,
        last,
        last_at,
        history_secs,
        samples: points.len(),
        resets,
        longest_gap_secs,
    })
}

/// Whether `fit` shows a gap worth a log line: longer than [`GAP_STEPS`] steps.
pub fn has_gap(fit: &Fit, step_secs: f64) -> bool {
    fit.longest_gap_secs > GAP_STEPS * step_secs
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: f64 = 60.0;
    const HOUR: f64 = 3600.0;

    /// `n` samples a step apart from t = 1e9, valued by `f(i)`.
    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                #[expect(clippy::cast_precision_loss, reason = "small test counts")]
                let t = 1e9 + i as f64 * STEP;
                (t, f(i))
            })
            .collect()
    }

    #[test]
    fn a_straight_line_is_fitted_exactly() {
        // 100 MiB growing 1 MiB a minute for two hours.
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let s = series(121, |i| 100.0 * 1_048_576.0 + i as f64 * 1_048_576.0);
        let fit = fit(&s, STEP, HOUR).unwrap();
        assert!((fit.slope_per_sec * 60.0 - 1_048_576.0).abs() < 1e-3);
        assert!((fit.r_squared - 1.0).abs() < 1e-12);
        assert!((fit.current - 220.0 * 1_048_576.0).abs() < 1.0);
        assert!((fit.history_secs - 2.0 * HOUR).abs() < f64::EPSILON);
        assert_eq!((fit.samples, fit.resets), (121, 0));
        // 300 MiB is 80 minutes away.
        let secs = fit.seconds_to(300.0 * 1_048_576.0).unwrap();
        assert!((secs - 80.0 * 60.0).abs() < 1e-3, "{secs}");
    }

    #[test]
    fn a_flat_series_with_spikes_has_no_trend_worth_acting_on() {
        let s = series(121, |i| if i % 17 == 0 { 900.0 } else { 200.0 });
        let fit = fit(&s, STEP, HOUR).unwrap();
        assert!(fit.r_squared < 0.1, "{fit:?}");
        let flat = super::fit(&series(121, |_| 5.0), STEP, HOUR).unwrap();
        assert!(flat.r_squared.abs() < f64::EPSILON && flat.slope_per_sec.abs() < 1e-12);
        assert_eq!(flat.seconds_to(10.0), None, "a flat line reaches nothing");
    }

    #[test]
    fn a_falling_line_or_one_already_at_the_ceiling_reaches_nothing() {
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let falling = fit(&series(121, |i| 1000.0 - i as f64), STEP, HOUR).unwrap();
        assert!(falling.slope_per_sec < 0.0);
        assert_eq!(falling.seconds_to(2000.0), None);
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let rising = fit(&series(121, |i| 100.0 + i as f64), STEP, HOUR).unwrap();
        assert_eq!(rising.seconds_to(150.0), None, "past it already");
    }

    #[test]
    fn only_what_follows_the_last_reset_is_fitted() {
        // A restarted container: two hours of growth, a drop, 30 minutes more.
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let s = series(151, |i| {
            if i <= 120 {
                100.0 + i as f64
            } else {
                10.0 + (i - 121) as f64
            }
        });
        assert!(matches!(
            fit(&s, STEP, HOUR),
            Err(NoTrend::TooShort { history_secs }) if (history_secs - 29.0 * 60.0).abs() < 1e-9
        ));
        let after = fit(&s, STEP, 600.0).unwrap();
        assert_eq!((after.samples, after.resets), (30, 1));
        assert!((after.slope_per_sec * 60.0 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn gaps_are_fitted_across_and_a_sparse_series_is_refused() {
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let mut s = series(121, |i| 100.0 + 2.0 * i as f64);
        // Twenty minutes missing in the middle.
        s.drain(50..70);
        let fit = super::fit(&s, STEP, HOUR).unwrap();
        assert!((fit.slope_per_sec * 60.0 - 2.0).abs() < 1e-9);
        assert!(has_gap(&fit, STEP) && (fit.longest_gap_secs - 21.0 * 60.0).abs() < 1e-9);
        let sparse: Vec<_> = s.iter().copied().step_by(3).collect();
        assert!(matches!(
            super::fit(&sparse, STEP, HOUR),
            Err(NoTrend::TooSparse { .. })
        ));
    }

    #[test]
    fn unusable_samples_are_dropped_and_never_make_a_negative_value() {
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let mut s = series(121, |i| i as f64);
        s[3].1 = f64::NAN;
        s[4].1 = f64::INFINITY;
        s[5].1 = -7.0;
        let fit = fit(&s, STEP, HOUR).unwrap();
        assert_eq!(fit.samples, 118);
        assert!(fit.current >= 0.0 && fit.slope_per_sec > 0.0);
        assert!(matches!(
            super::fit(&s[..5], STEP, 0.0),
            Err(NoTrend::TooFewSamples(3))
        ));
        assert_eq!(super::fit(&[], STEP, 0.0), Err(NoTrend::TooFewSamples(0)));
    }

    #[test]
    fn a_series_without_resets_fits_its_dips_too() {
        // Rising, with one sample at a quarter of its neighbours.
        #[expect(clippy::cast_precision_loss, reason = "small test counts")]
        let dipped = series(14, |i| {
            let v = 0.04 + 0.02 * i as f64;
            if i == 6 { v / 4.0 } else { v }
        });
        let reset = fit(&dipped, STEP, 0.0).unwrap();
        assert_eq!((reset.resets, reset.samples), (1, 8));
        let all = fit_all(&dipped, STEP, 0.0).unwrap();
        assert_eq!((all.resets, all.samples), (0, 14));
        assert!(all.slope_per_sec > 0.0 && all.r_squared > 0.8, "{all:?}");
    }
}
