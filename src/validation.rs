//! The comparison with the real grpc-go code: what the Go harness of
//! `validation/go/` measured (leak counts per version, GOMAXPROCS, race
//! detector and close delay; and this machine's runtime latencies), the
//! `[runtime]` model derived from those latencies, and the rows that set the
//! measured rates beside lbsim's prediction of the same harness.
//!
//! The runtime model is derived from latency measurements only, never from a
//! leak rate, so that the comparison tests the model rather than fits it.

use std::path::Path;

use serde::Deserialize;

use crate::grpc::Variant;
use crate::sim::dist::Dist;
use crate::sim::strategy::RuntimeModel;

/// A file of the comparison that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}\n  help: {help}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
        help: String,
    },
}

/// Quantiles of a measured latency, in ns (`validation/go` `Dist`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Summary {
    pub n: u64,
    #[serde(default)]
    pub mean: f64,
    #[serde(default)]
    pub p10: f64,
    #[serde(default)]
    pub p25: f64,
    #[serde(default)]
    pub p50: f64,
    #[serde(default)]
    pub p75: f64,
    #[serde(default)]
    pub p90: f64,
    #[serde(default)]
    pub p99: f64,
}

impl Summary {
    /// A lognormal with this median whose 90th percentile is p90 (sigma at
    /// least `floor`, so that a tight measurement still varies).
    fn lognormal(&self, floor: f64) -> Dist {
        let sigma = if self.p50 > 0.0 && self.p90 > self.p50 {
            (self.p90 / self.p50).ln() / 1.2816
        } else {
            0.0
        };
        Dist::LogNormal {
            median: self.p50.max(1.0) as u64,
            sigma: sigma.max(floor),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct StepCosts {
    pub close: Summary,
    pub iteration: Summary,
    /// The harness's wake-ups after p0's picker that took at least 10 µs.
    pub harness_wake_slow: Summary,
}

/// One bucket of the pause histogram; the last has no upper bound.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Bucket {
    pub lo_ns: u64,
    pub hi_ns: Option<u64>,
    pub count: u64,
}

/// A spinning goroutine's view of involuntary pauses.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PauseRun {
    /// Time the spinner really ran (without the gaps).
    pub spin_ns: u64,
    pub gaps: u64,
    pub histogram: Vec<Bucket>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Pauses {
    pub threshold_ns: u64,
    /// The spinner alone.
    pub idle: PauseRun,
    /// The spinner beside the harness loop.
    pub harness: PauseRun,
    /// The priority worker itself, spinning inside the race's window of the
    /// real harness (right after it handed p0's picker to the parent).
    pub worker: PauseRun,
}

/// What `validation/go -mode calibrate` writes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Calibration {
    pub version: String,
    pub race: bool,
    pub gomaxprocs: u32,
    pub wake_running_waker: Summary,
    pub stolen: Summary,
    pub stolen_fraction: f64,
    pub wake_blocking_waker: Summary,
    /// The waker's own time inside the send of `wake_running_waker`.
    pub wake_send_cost: Summary,
    pub mutex_handoff: Summary,
    pub step_costs: StepCosts,
    pub pauses: Pauses,
}

impl Calibration {
    pub fn load(path: &Path) -> Result<Calibration, ValidationError> {
        let text = read(path)?;
        serde_json::from_str(&text).map_err(|e| ValidationError::Invalid {
            path: path.display().to_string(),
            line: e.line(),
            message: e.to_string(),
            help: "write it with `validation/go -mode calibrate` (see validation/run.sh)".into(),
        })
    }

    /// The timed strategy's model of this machine's Go runtime, from the
    /// latencies alone. `steps_per_iteration` is the number of scheduling
    /// decisions of one run of the harness scenario in lbsim.
    ///
    /// * step cost: the native time of a whole harness iteration spread over
    ///   the model's decisions (median), with the spread of `Close`, the
    ///   harness step made of lock operations only;
    /// * handoff: the ping-pong wake-up (the waker blocks at once) less the
    ///   waker's own time in the send, medians, at least 100 ns: with an idle
    ///   processor the send wakes a thread (10-20 µs here), which the waker
    ///   pays and the harness's loop mostly does not (its wake-up after p0's
    ///   picker takes about 1 µs);
    /// * steal: how long another processor takes to steal the harness from
    ///   the worker's runnext when the worker stalls: the slow wake-ups of
    ///   the harness after p0's picker (at least 10 µs; the fast ones are
    ///   hand-offs when the worker blocks); and how often an idle processor
    ///   steals from a running waker at all (`stolen_fraction`);
    /// * wake latency (timer wake-ups and goroutines pushed out of a
    ///   runnext): the ping-pong median;
    /// * pauses: every gap of at least the threshold that the priority
    ///   worker saw while it spun inside the race's window of the real
    ///   harness, as a histogram, at the rate per second of running time,
    ///   spread over steps of the model's mean cost. (A lone spinner sees
    ///   far fewer: the worker's pauses come with the other processor's
    ///   thread waking up.)
    pub fn runtime_model(&self, steps_per_iteration: f64) -> RuntimeModel {
        let it = &self.step_costs.iteration;
        let step_cost = Dist::LogNormal {
            median: (it.p50 / steps_per_iteration.max(1.0)).max(1.0) as u64,
            sigma: self.step_costs.close.lognormal(0.1).sigma(),
        };
        let handoff = Dist::LogNormal {
            median: (self.wake_blocking_waker.p50 - self.wake_send_cost.p50).max(100.0) as u64,
            sigma: 0.5,
        };
        let slow = &self.step_costs.harness_wake_slow;
        let (steal, steal_prob) = if self.gomaxprocs > 1 && slow.n > 0 {
            (slow.lognormal(0.05), self.stolen_fraction.clamp(0.0, 1.0))
        } else {
            (Dist::Const(10_000_000), 0.0)
        };
        let seen = &self.pauses.worker;
        let buckets: Vec<(u64, u64, u64)> = seen
            .histogram
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.lo_ns, b.hi_ns.unwrap_or(b.lo_ns * 2), b.count))
            .collect();
        let (pause_prob, pause) = if buckets.is_empty() || seen.spin_ns == 0 {
            (0.0, Dist::Const(0))
        } else {
            let per_ns = seen.gaps as f64 / seen.spin_ns as f64;
            ((per_ns * step_cost.mean()).min(1.0), Dist::Hist(buckets))
        };
        RuntimeModel {
            gomaxprocs: self.gomaxprocs,
            step_cost,
            wake_latency: self.wake_blocking_waker.lognormal(0.1),
            pause_prob,
            pause,
            handoff: Some(handoff),
            steal: Some(steal),
            steal_prob,
        }
    }
}

trait Sigma {
    fn sigma(&self) -> f64;
}

impl Sigma for Dist {
    fn sigma(&self) -> f64 {
        match self {
            Dist::LogNormal { sigma, .. } => *sigma,
            _ => 0.0,
        }
    }
}

/// The `[runtime]` table of a model, as a scenario file writes it.
pub fn runtime_toml(m: &RuntimeModel) -> String {
    let mut s = format!(
        "[runtime]\ngomaxprocs = {}\nstep_cost = \"{}\"\nwake_latency = \"{}\"\npause_prob = {}\npause = \"{}\"\n",
        m.gomaxprocs, m.step_cost, m.wake_latency, m.pause_prob, m.pause
    );
    if let Some(h) = &m.handoff {
        s.push_str(&format!("handoff = \"{h}\"\n"));
    }
    if let Some(st) = &m.steal {
        s.push_str(&format!(
            "steal = \"{st}\"\nsteal_prob = {}\n",
            m.steal_prob
        ));
    }
    s
}

/// One measured point of the real harness (a line of `real.jsonl`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RealRow {
    pub version: String,
    pub race: bool,
    pub gomaxprocs: u32,
    pub delay_ns: u64,
    pub iterations: u64,
    pub leaks: u64,
}

impl RealRow {
    /// The lbsim variant that models this grpc-go version.
    pub fn variant(&self) -> Option<Variant> {
        match self.version.as_str() {
            "v1.71.1" => Some(Variant::Pre8095),
            "v1.72.0" => Some(Variant::Pr8095),
            v if v.starts_with("v1.81.") => Some(Variant::A115),
            _ => None,
        }
    }
}

/// Reads `real.jsonl`: one JSON object per line; rows of the same point
/// (version, race, GOMAXPROCS, delay) are added up.
pub fn load_real(path: &Path) -> Result<Vec<RealRow>, ValidationError> {
    let text = read(path)?;
    let mut rows: Vec<RealRow> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: RealRow = serde_json::from_str(line).map_err(|e| ValidationError::Invalid {
            path: path.display().to_string(),
            line: i + 1,
            message: e.to_string(),
            help: "each line must be one JSON object written by validation/go (version, race, gomaxprocs, delay_ns, iterations, leaks)".into(),
        })?;
        if r.variant().is_none() {
            return Err(ValidationError::Invalid {
                path: path.display().to_string(),
                line: i + 1,
                message: format!("grpc-go version `{}` has no lbsim variant", r.version),
                help: "measure v1.71.1 (pre-8095), v1.72.0 (pr-8095) or v1.81.x (a115)".into(),
            });
        }
        match rows.iter_mut().find(|q| {
            q.version == r.version
                && q.race == r.race
                && q.gomaxprocs == r.gomaxprocs
                && q.delay_ns == r.delay_ns
        }) {
            Some(q) => {
                q.iterations += r.iterations;
                q.leaks += r.leaks;
            }
            None => rows.push(r),
        }
    }
    if rows.is_empty() {
        return Err(ValidationError::Invalid {
            path: path.display().to_string(),
            line: 1,
            message: "no measurements in the file".into(),
            help: "run validation/run.sh to measure the real harness".into(),
        });
    }
    Ok(rows)
}

fn read(path: &Path) -> Result<String, ValidationError> {
    std::fs::read_to_string(path).map_err(|source| ValidationError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p10: f64, p50: f64, p90: f64) -> Summary {
        Summary {
            n: 100,
            p10,
            p50,
            p90,
            ..Summary::default()
        }
    }

    fn calibration(gomaxprocs: u32) -> Calibration {
        let run = PauseRun {
            spin_ns: 1_000_000_000,
            gaps: 1_000,
            histogram: vec![
                Bucket {
                    lo_ns: 2_000,
                    hi_ns: Some(5_000),
                    count: 600,
                },
                Bucket {
                    lo_ns: 20_000_000,
                    hi_ns: None,
                    count: 400,
                },
            ],
        };
        Calibration {
            version: "v1.81.1".into(),
            race: false,
            gomaxprocs,
            wake_running_waker: summary(70_000.0, 72_000.0, 200_000.0),
            stolen: summary(70_000.0, 72_000.0, 74_000.0),
            stolen_fraction: 0.7,
            wake_blocking_waker: summary(190.0, 10_000.0, 11_000.0),
            wake_send_cost: summary(9_000.0, 9_700.0, 10_500.0),
            mutex_handoff: summary(70_000.0, 72_000.0, 100_000.0),
            step_costs: StepCosts {
                close: summary(700.0, 800.0, 1_000.0),
                iteration: summary(12_000.0, 13_200.0, 40_000.0),
                harness_wake_slow: summary(13_000.0, 28_000.0, 97_000.0),
            },
            pauses: Pauses {
                threshold_ns: 2_000,
                idle: run.clone(),
                harness: run.clone(),
                worker: run,
            },
        }
    }

    #[test]
    fn the_model_follows_the_measured_latencies() {
        let m = calibration(2).runtime_model(110.0);
        assert_eq!(m.gomaxprocs, 2);
        let Dist::LogNormal { median, sigma } = m.step_cost else {
            panic!("{:?}", m.step_cost)
        };
        assert_eq!(median, 120);
        assert!((sigma - (1_000f64 / 800.0).ln() / 1.2816).abs() < 1e-9);
        assert_eq!(m.steal_prob, 0.7);
        let Some(Dist::LogNormal { median, .. }) = m.steal else {
            panic!("{:?}", m.steal)
        };
        assert_eq!(median, 28_000);
        assert_eq!(
            m.handoff,
            Some(Dist::LogNormal {
                median: 300,
                sigma: 0.5
            })
        );
        // 1,000 gaps per second of running time, over steps of the mean cost.
        let want = 1e-6 * m.step_cost.mean();
        assert!((m.pause_prob - want).abs() < 1e-12, "{}", m.pause_prob);
        assert_eq!(
            m.pause,
            Dist::Hist(vec![(2_000, 5_000, 600), (20_000_000, 40_000_000, 400)])
        );
    }

    #[test]
    fn one_processor_never_steals() {
        let m = calibration(1).runtime_model(110.0);
        assert_eq!(m.steal_prob, 0.0);
        assert!(m.steal.is_some(), "the runnext model is on");
    }

    #[test]
    fn the_runtime_table_parses_back_into_the_same_model() {
        let m = calibration(2).runtime_model(110.0);
        let toml = format!(
            "[scenario]\nname = \"t\"\n[probe]\nchildren = [\"p0\", \"p1\"]\n[client]\nscript = [{{ op = \"close\" }}]\n{}",
            runtime_toml(&m)
        );
        let s = crate::scenario::Scenario::parse("t.toml", &toml).expect("parses");
        assert_eq!(s.runtime, m);
    }

    #[test]
    fn real_rows_of_one_point_add_up_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("real.jsonl");
        let row = |leaks: u64| {
            format!(
                "{{\"version\":\"v1.71.1\",\"race\":false,\"gomaxprocs\":2,\"delay_ns\":0,\"iterations\":1000,\"leaks\":{leaks},\"rate\":0.001}}\n"
            )
        };
        std::fs::write(&p, row(1) + &row(2)).unwrap();
        let rows = load_real(&p).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].iterations, rows[0].leaks), (2000, 3));
        assert_eq!(rows[0].variant(), Some(Variant::Pre8095));

        std::fs::write(&p, row(1) + "{\"version\": 3}\n").unwrap();
        let e = load_real(&p).unwrap_err().to_string();
        assert!(e.contains("real.jsonl:2:"), "{e}");
    }
}
