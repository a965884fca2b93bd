//! Who the load goes to: evenly over many workspaces, mostly to one hot workspace, or mixed (one hot workspace,
//! one whose endpoint hangs, many small ones). Each workspace has a class, so the report can say how each kind
//! fared: the small workspaces' latency while the hot one runs and the hanging one hangs is the point.

/// A workspace's part in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Hot,
    Small,
    /// Its endpoint never answers; its events are not expected to arrive.
    Hanging,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Hot => "hot",
            Class::Small => "small",
            Class::Hanging => "hanging",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scenario {
    /// The load spread evenly over every workspace.
    Uniform,
    /// `hot_share` of the load to one workspace, the rest spread over the others.
    Hot { hot_share: f64 },
    /// As [`Scenario::Hot`], and `hang_share` of it to one workspace whose endpoint hangs.
    Mixed { hot_share: f64, hang_share: f64 },
}

impl Scenario {
    pub fn parse(name: &str, hot_share: f64, hang_share: f64) -> Result<Scenario, String> {
        match name {
            "uniform" => Ok(Scenario::Uniform),
            "hot" => Ok(Scenario::Hot { hot_share }),
            "mixed" => Ok(Scenario::Mixed { hot_share, hang_share }),
            other => Err(format!("--scenario: `{other}` is not uniform, hot or mixed")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Uniform => "uniform",
            Scenario::Hot { .. } => "hot",
            Scenario::Mixed { .. } => "mixed",
        }
    }

    /// The class of each of `n` workspaces: the hot one first, then the hanging one, then the small ones.
    pub fn classes(self, n: usize) -> Vec<Class> {
        let special = match self {
            Scenario::Uniform => vec![],
            Scenario::Hot { .. } => vec![Class::Hot],
            Scenario::Mixed { .. } => vec![Class::Hot, Class::Hanging],
        };
        let small = n.saturating_sub(special.len()).max(1);
        special.into_iter().chain(std::iter::repeat_n(Class::Small, small)).collect()
    }

    /// Which workspace request `n` goes to, among `classes`: spread by hundredths of the sequence, so the shares
    /// hold over any hundred requests.
    pub fn pick(self, n: u64, classes: &[Class]) -> usize {
        let (hot, hang) = match self {
            Scenario::Uniform => (0.0, 0.0),
            Scenario::Hot { hot_share } => (hot_share, 0.0),
            Scenario::Mixed { hot_share, hang_share } => (hot_share, hang_share),
        };
        // Golden-ratio spacing keeps each share even within any stretch of requests.
        let u = (n as f64 * 0.618_033_988_749_895).fract();
        let find = |class: Class| classes.iter().position(|c| *c == class);
        if u < hot {
            if let Some(i) = find(Class::Hot) {
                return i;
            }
        } else if u < hot + hang {
            if let Some(i) = find(Class::Hanging) {
                return i;
            }
        }
        let small: Vec<usize> = (0..classes.len()).filter(|i| classes[*i] == Class::Small).collect();
        small[(n as usize) % small.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_hold() {
        let s = Scenario::Mixed { hot_share: 0.8, hang_share: 0.02 };
        let classes = s.classes(50);
        assert_eq!((classes[0], classes[1], classes.len()), (Class::Hot, Class::Hanging, 50));
        let mut count = [0usize; 3];
        for n in 0..10_000 {
            match classes[s.pick(n, &classes)] {
                Class::Hot => count[0] += 1,
                Class::Hanging => count[1] += 1,
                Class::Small => count[2] += 1,
            }
        }
        assert!((7900..=8100).contains(&count[0]), "{count:?}");
        assert!((150..=250).contains(&count[1]), "{count:?}");
        let uniform = Scenario::Uniform;
        assert_eq!(uniform.classes(1), vec![Class::Small]);
        assert_eq!(uniform.pick(7, &uniform.classes(1)), 0);
    }
}
