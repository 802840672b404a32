//! After a migration: did the source host's utilisation fall by what the moved workloads
//! used? Pure: fed one utilisation sample per period.

/// Watches one migration for `window` periods.
#[derive(Clone, Debug)]
pub struct Watch {
    /// Mean utilisation of the source host over the periods before the move.
    before: f64,
    /// What the moved workloads used (the gain a perfect move shows).
    expected: f64,
    samples: Vec<f64>,
    window: usize,
    min_gain_fraction: f64,
}

/// The watch's conclusion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchResult {
    pub gain: f64,
    pub expected: f64,
    pub met: bool,
}

impl Watch {
    pub fn new(before: f64, expected: f64, window: usize, min_gain_fraction: f64) -> Watch {
        Watch { before, expected, samples: Vec::new(), window: window.max(1), min_gain_fraction }
    }

    /// `Some` once the window is full: gain = before − mean(after); met when gain >= fraction × expected.
    pub fn observe(&mut self, utilisation: f64) -> Option<WatchResult> {
        if utilisation.is_finite() {
            self.samples.push(utilisation);
        }
        if self.samples.len() < self.window {
            return None;
        }
        let after = self.samples.iter().sum::<f64>() / self.samples.len() as f64;
        let gain = self.before - after;
        Some(WatchResult { gain, expected: self.expected, met: gain >= self.min_gain_fraction * self.expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gain_that_shows_is_met_and_one_that_does_not_is_not() {
        let mut w = Watch::new(0.9, 0.3, 3, 0.5);
        assert_eq!(w.observe(0.65), None);
        assert_eq!(w.observe(0.6), None);
        let r = w.observe(0.55).expect("window full");
        assert!(r.met && (r.gain - 0.3).abs() < 1e-9, "{r:?}");
        let mut w = Watch::new(0.9, 0.3, 2, 0.5);
        w.observe(0.88);
        assert!(!w.observe(0.9).expect("window full").met);
    }
}
