//! The search behind `crm-bench --find-max`: which offered rate the pipeline still sustains.
//!
//! The rate grows by 30% per step until a step is not sustained. A 30% step says little about where between the
//! last sustained rate and the first one that was not the limit lies, so the search then halves that gap
//! `refine` times (each halving is one more run): with the default two, the answer is within ≈ 7% of the first
//! rate that failed. The search assumes a rate above one that failed fails too; a noisy machine can break that,
//! which is why each step's outcome is reported, not just the answer.

/// Growth per step before the first failure.
pub const GROWTH: f64 = 1.3;
/// Halvings of the gap after the first failure, unless told otherwise (`--refine`).
pub const DEFAULT_REFINE: u32 = 2;
/// No step offers more than this.
pub const MAX_RATE: f64 = 100_000.0;

/// Where the search stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSearch {
    /// The highest rate sustained so far.
    best: Option<f64>,
    /// The lowest rate not sustained so far.
    failed: Option<f64>,
    /// Halvings left once a step has failed.
    refine: u32,
}

impl RateSearch {
    pub fn new(refine: u32) -> RateSearch {
        RateSearch { best: None, failed: None, refine }
    }

    /// Takes the outcome of the step at `rate` and says which rate to run next, if any.
    pub fn next(&mut self, rate: f64, sustained: bool) -> Option<f64> {
        if sustained {
            self.best = Some(self.best.map_or(rate, |best| best.max(rate)));
        } else {
            self.failed = Some(self.failed.map_or(rate, |failed| failed.min(rate)));
        }
        match (self.best, self.failed) {
            (_, None) => Some((rate * GROWTH).round()).filter(|next| *next <= MAX_RATE),
            // Even the first rate failed: there is no gap to halve.
            (None, Some(_)) => None,
            (Some(best), Some(failed)) => {
                let middle = ((best + failed) / 2.0).round();
                if self.refine == 0 || middle <= best || middle >= failed {
                    return None;
                }
                self.refine -= 1;
                Some(middle)
            }
        }
    }

    /// The highest rate sustained.
    pub fn best(&self) -> Option<f64> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search from `start` against a pipeline that sustains every rate up to `limit`; returns the answer
    /// and the rates run.
    fn search(start: f64, limit: f64, refine: u32) -> (Option<f64>, Vec<f64>) {
        let mut search = RateSearch::new(refine);
        let (mut rate, mut runs) = (Some(start), Vec::new());
        while let Some(r) = rate {
            runs.push(r);
            rate = search.next(r, r <= limit);
        }
        (search.best(), runs)
    }

    #[test]
    fn without_refinement_the_answer_is_the_last_step_sustained() {
        let (best, runs) = search(2000.0, 4000.0, 0);
        assert_eq!(runs, vec![2000.0, 2600.0, 3380.0, 4394.0]);
        assert_eq!(best, Some(3380.0));
    }

    #[test]
    fn refinement_halves_the_gap_between_the_last_success_and_the_first_failure() {
        let (best, runs) = search(2000.0, 4000.0, 2);
        // 3380 sustained, 4394 not: 3887 is, then 4141 (the middle of 3887 and 4394) is not.
        assert_eq!(runs, vec![2000.0, 2600.0, 3380.0, 4394.0, 3887.0, 4141.0]);
        assert_eq!(best, Some(3887.0));
        let (best, _) = search(2000.0, 4394.0 - 1.0, 3);
        let best = best.unwrap();
        assert!((4394.0 - best) / 4394.0 < 0.04, "{best} should be within 4% of the first failure");
    }

    #[test]
    fn a_first_step_that_fails_ends_the_search_with_no_answer() {
        let (best, runs) = search(2000.0, 1000.0, 2);
        assert_eq!(runs, vec![2000.0]);
        assert_eq!(best, None);
    }

    #[test]
    fn the_search_stops_at_the_ceiling() {
        let (best, runs) = search(60_000.0, f64::INFINITY, 2);
        assert_eq!(runs, vec![60_000.0, 78_000.0]);
        assert_eq!(best, Some(78_000.0));
    }
}
