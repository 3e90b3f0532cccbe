//! Scenario files: the TOML schema, validation into a [`Scenario`] the rest of
//! the program trusts, and errors that name the file, line and column and say
//! how to fix the problem.
//!
//! Shape of a file (every table denies unknown keys; see `scenarios/*.toml`):
//!
//! ```toml
//! [scenario]
//! name = "switch_to_lower_priority_and_back"
//! description = "..."
//!
//! [[backend]]                 # one per server address
//! name = "s0"
//! latency = "lognormal(300us, 0.5)"   # connection set-up time (default 200us)
//! down = "refuse"             # when down: refuse (fast) or timeout
//! connect_timeout = "100ms"   # how long a `timeout` backend hangs (default 100ms)
//! initial = "up"              # state at t=0 (default up)
//! flap = { up = "exp(2s)", down = "exp(500ms)" }   # optional random flapping
//!
//! [[priority]]                # in order: the first table is p0
//! backends = ["s0"]
//!
//! [[health]]                  # scripted transitions, in time order
//! at = "1.5s"
//! backend = "s0"
//! state = "down"
//!
//! [balancer]                  # defaults shown
//! init_timeout = "10s"
//! cache_timeout = "15m"
//! child_policy = "round_robin"   # or pick_first; ring_hash runs round_robin
//!
//! [connect]                   # reconnect backoff (grpc.ConnectParams)
//! preset = "test"             # the real test's fastConnectParams (default):
//!                             # base_delay 10ms, multiplier 0, jitter 0,
//!                             # max_delay 0, min_connect_timeout 100ms;
//!                             # "grpc": grpc-go's defaults (1s, 1.6, 0.2,
//!                             # 120s, 20s). The keys below override it.
//! base_delay = "1s"
//! multiplier = 1.6
//! jitter = 0.2
//! max_delay = "120s"
//! min_connect_timeout = "20s"
//!
//! [client]
//! leak_check_grace = "10s"
//! test_logger = true          # the Go test's grpctest logger: every Info
//!                             # log of grpc-go takes its shared mutex
//!                             # (default false: grpc-go's default logger)
//! script = [
//!   { op = "rpc", expect = "s0" },
//!   { op = "stop_listener", backend = "s0" },
//!   { op = "rpc_until", backend = "s1", wait_for_ready = true, timeout = "10s" },
//!   { op = "restart_listener", backend = "s0" },
//!   { op = "sleep", for = "uniform(0, 5ms)" },
//!   { op = "update_config", priorities = [["s1"], ["s0"]], child_policy = "pick_first" },
//!   { op = "close" },
//! ]
//!
//! [runtime]                   # the timed strategy's model of the Go runtime
//! gomaxprocs = 2
//! step_cost = "lognormal(150ns, 0.6)"
//! wake_latency = "lognormal(1us, 0.5)"
//! pause_prob = 0.001
//! pause = "pareto(20us, 1.2, 20ms)"
//! steal = "lognormal(60us, 0.3)"      # optional: Go's runnext rule for wake-ups
//! handoff = "lognormal(300ns, 0.5)"   # (see src/sim/strategy/timed.rs)
//! steal_prob = 0.7
//!
//! [run]                       # defaults for `lbsim run`
//! runs = 100000
//! seed = 1                    # or a quoted u64: seed = "12612280629371687117"
//! strategy = "timed"
//! variants = "all"            # or a list: ["pre-8095", "pr-8095"]
//! ```
//!
//! `update_config` pushes a new configuration mid-run, as a new xDS update
//! would: `priorities` lists the backends of each priority, highest first
//! (a backend may be left out, none may be listed twice), and the optional
//! `child_policy` (round_robin or pick_first; ring_hash is not modelled)
//! replaces the policy under every priority; left out, the current one
//! stays (`[balancer] child_policy` until a push changes it). The update goes to
//! cluster_resolver, which names the children as grpc-go's does: a priority
//! keeps the name (`priority-0-<n>`) of the first of its backends that the
//! previous config had placed, if no higher priority took that name, and
//! gets a new one otherwise.
//!
//! Priorities are `[[priority]]` tables listing backend names, rather than a
//! priority number on each backend, so that an empty priority and a backend
//! left out of every priority are both visible and reportable.

pub mod driver;
mod raw;

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::grpc::subconn::ConnectParams;
use crate::grpc::{ConnectivityState, Variant};
use crate::sim::dist::{Dist, parse_duration};
use crate::sim::strategy::{RuntimeModel, StrategyKind};
use crate::sim::{MS, SEC, US};
use raw::{RawConnect, RawScenario, RawSeed, RawStep, RawVariants, Text};

/// A scenario file that failed to load, or a parameter that could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read the scenario file")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}\n  help: {help}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
        help: String,
    },
    #[error("unknown parameter `{key}`; settable parameters: {}", PARAM_KEYS.join(", "))]
    UnknownParam { key: String },
    #[error("parameter `{key}` = `{value}`: {message}")]
    BadParam {
        key: String,
        value: String,
        message: String,
    },
}

/// What a backend does with connection attempts while it is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownBehaviour {
    /// The connection is refused at once (a stopped listener on loopback).
    Refuse,
    /// The attempt hangs until the backend's `connect_timeout`.
    Timeout,
}

/// Random up/down flapping: how long each up and each down period lasts.
#[derive(Clone, Debug, PartialEq)]
pub struct Flap {
    pub up: Dist,
    pub down: Dist,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub name: String,
    pub latency: Dist,
    pub down: DownBehaviour,
    pub connect_timeout: u64,
    pub initially_up: bool,
    pub flap: Option<Flap>,
}

/// One priority (locality), highest first; holds indices into `backends`.
#[derive(Clone, Debug, PartialEq)]
pub struct Priority {
    pub name: String,
    pub backends: Vec<usize>,
}

/// A scripted health transition of one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthEvent {
    pub at: u64,
    pub backend: usize,
    pub up: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildPolicy {
    RoundRobin,
    PickFirst,
    RingHash,
}

impl ChildPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildPolicy::RoundRobin => "round_robin",
            ChildPolicy::PickFirst => "pick_first",
            ChildPolicy::RingHash => "ring_hash",
        }
    }

    /// The policy the channel runs under each priority. ring_hash is not
    /// modelled: it runs round_robin, which with one endpoint per priority
    /// (as in the test the flagship models) picks the same backend.
    pub fn channel_policy(self) -> &'static str {
        match self {
            ChildPolicy::RoundRobin | ChildPolicy::RingHash => "round_robin",
            ChildPolicy::PickFirst => "pick_first",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BalancerConfig {
    pub init_timeout: u64,
    pub cache_timeout: u64,
    pub child_policy: ChildPolicy,
}

/// One step of the client (the test goroutine). Backends are indices.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientStep {
    /// One RPC; with `expect`, it must reach that backend.
    Rpc {
        expect: Option<usize>,
        wait_for_ready: bool,
        timeout: u64,
    },
    /// RPCs in a loop until one reaches `backend`; failing past `timeout` is fatal.
    RpcUntil {
        backend: usize,
        wait_for_ready: bool,
        timeout: u64,
    },
    StopListener {
        backend: usize,
    },
    RestartListener {
        backend: usize,
    },
    /// Push a new configuration: the backends of each priority, highest
    /// first, and the policy under every priority if it changes.
    UpdateConfig {
        priorities: Vec<Vec<usize>>,
        child_policy: Option<ChildPolicy>,
    },
    /// Sleep for a duration drawn from the distribution (a plain duration is constant).
    Sleep {
        duration: Dist,
    },
    /// Busy for a duration drawn from the distribution: the task keeps its
    /// processor, like the Go harness spinning on the monotonic clock.
    Spin {
        duration: Dist,
    },
    /// Probe harness: the probe of child `child` reports `state`.
    Report {
        child: usize,
        state: ConnectivityState,
    },
    /// Probe harness: wait until child `child` has been built and configured.
    WaitBuilt {
        child: usize,
    },
    /// Probe harness: wait until child `child`'s READY picker reaches the parent.
    WaitPicker {
        child: usize,
    },
    /// Close the channel (the priority policy in the probe harness); always
    /// the last step.
    Close,
}

/// The validation harness (`[probe]`): the priority policy built directly on
/// a recording parent, with probe children reporting scripted states; no
/// channel, no backends, no SubConns. It is what `validation/go/` runs on the
/// real grpc-go code.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeHarness {
    /// Child names, highest priority first.
    pub children: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClientScript {
    pub steps: Vec<ClientStep>,
    pub leak_check_grace: u64,
    /// The Go test runs under grpctest, whose logger takes a process-wide
    /// mutex for every Info log (`src/grpc/grpclog.rs`).
    pub test_logger: bool,
}

/// Defaults for `lbsim run`, overridable on the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDefaults {
    pub runs: u64,
    pub seed: u64,
    pub strategy: StrategyKind,
    pub variants: Vec<Variant>,
}

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The file it was loaded from, as given.
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub backends: Vec<Backend>,
    pub priorities: Vec<Priority>,
    pub health: Vec<HealthEvent>,
    pub balancer: BalancerConfig,
    /// The channel's reconnect backoff and minimum connect timeout.
    pub connect: ConnectParams,
    pub client: ClientScript,
    /// Set for the probe harness; then `backends`, `priorities` and `health`
    /// are empty.
    pub probe: Option<ProbeHarness>,
    pub runtime: RuntimeModel,
    pub run: RunDefaults,
}

/// Keys accepted by [`Scenario::set_param`].
pub const PARAM_KEYS: &[&str] = &[
    "balancer.init_timeout",
    "balancer.cache_timeout",
    "client.leak_check_grace",
    "client.spin",
    "connect.base_delay",
    "connect.multiplier",
    "connect.jitter",
    "connect.max_delay",
    "connect.min_connect_timeout",
    "runtime.gomaxprocs",
    "runtime.step_cost",
    "runtime.wake_latency",
    "runtime.pause_prob",
    "runtime.pause",
    "runtime.handoff",
    "runtime.steal",
    "runtime.steal_prob",
    "run.runs",
    "run.seed",
];

const DURATION_HELP: &str = "write a duration as a quoted string such as \"10s\", \"250ms\" or \"0\" (units ns, us, ms, s, m, h); durations cannot be negative";
const DIST_HELP: &str = "write a distribution as a quoted string: a duration such as \"5ms\", or const(5ms), uniform(1ms, 5ms), exp(5ms) (mean), lognormal(200ns, 0.5) (median, sigma), pareto(20us, 1.5, 10ms) (minimum, shape, cap)";

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(path, &src)
    }

    /// Validates scenario text; `path` is used in error messages.
    pub fn parse(path: impl AsRef<Path>, src: &str) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let cx = Cx {
            path: path.display().to_string(),
            src,
        };
        let raw: RawScenario = toml::from_str(src).map_err(|e| cx.toml_error(&e))?;
        cx.validate(raw, path)
    }

    /// The file name without directory and extension, e.g. `close_race_minimal`.
    pub fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone())
    }

    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    /// Sets one parameter by dotted key (see [`PARAM_KEYS`]), with the value
    /// written as in the file: `"30s"` for durations, `"0.01"` for
    /// probabilities, `"4"` for counts, `"exp(5ms)"` for distributions. For
    /// `lbsim sweep` and command-line overrides.
    pub fn set_param(&mut self, key: &str, value: &str) -> Result<(), ScenarioError> {
        let bad = |message: String| ScenarioError::BadParam {
            key: key.to_string(),
            value: value.to_string(),
            message,
        };
        let dist = |v: &str| Dist::parse(v).map_err(bad);
        let dur = |v: &str| parse_duration(v).map_err(bad);
        let probability = |v: &str| -> Result<f64, ScenarioError> {
            match v.trim().parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
                _ => Err(bad("must be a probability between 0 and 1".into())),
            }
        };
        let count = |v: &str, min: u64| -> Result<u64, ScenarioError> {
            match v.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(bad(format!("must be a whole number of at least {min}"))),
            }
        };
        match key {
            "balancer.init_timeout" => self.balancer.init_timeout = dur(value)?,
            "balancer.cache_timeout" => self.balancer.cache_timeout = dur(value)?,
            "client.leak_check_grace" => self.client.leak_check_grace = dur(value)?,
            "connect.base_delay" => self.connect.backoff.base_delay = dur(value)?,
            "connect.max_delay" => self.connect.backoff.max_delay = dur(value)?,
            "connect.min_connect_timeout" => self.connect.min_connect_timeout = dur(value)?,
            "connect.multiplier" => {
                self.connect.backoff.multiplier = match value.trim().parse::<f64>() {
                    Ok(m) if m.is_finite() && m >= 0.0 => m,
                    _ => return Err(bad("must be a number of at least 0".into())),
                }
            }
            "connect.jitter" => self.connect.backoff.jitter = probability(value)?,
            "client.spin" => {
                let d = dist(value)?;
                let mut found = false;
                for step in &mut self.client.steps {
                    if let ClientStep::Spin { duration } = step {
                        *duration = d.clone();
                        found = true;
                    }
                }
                if !found {
                    return Err(bad(
                        "the client script has no spin step to set; add { op = \"spin\", for = \"0\" }".into(),
                    ));
                }
            }
            "runtime.gomaxprocs" => {
                self.runtime.gomaxprocs =
                    u32::try_from(count(value, 1)?).map_err(|_| bad("too large".into()))?
            }
            "runtime.step_cost" => self.runtime.step_cost = dist(value)?,
            "runtime.wake_latency" => self.runtime.wake_latency = dist(value)?,
            "runtime.pause" => self.runtime.pause = dist(value)?,
            "runtime.handoff" => self.runtime.handoff = Some(dist(value)?),
            "runtime.steal" => self.runtime.steal = Some(dist(value)?),
            "runtime.steal_prob" => self.runtime.steal_prob = probability(value)?,
            "runtime.pause_prob" => self.runtime.pause_prob = probability(value)?,
            "run.runs" => self.run.runs = count(value, 1)?,
            "run.seed" => self.run.seed = count(value, 0)?,
            _ => {
                return Err(ScenarioError::UnknownParam {
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Backends, their names, priorities and health transitions.
type Topology = (Vec<Backend>, Vec<String>, Vec<Priority>, Vec<HealthEvent>);

/// Validation context: the file's name and text, to turn spans into lines.
struct Cx<'a> {
    path: String,
    src: &'a str,
}

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn err(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = self.line_col(span.start);
        ScenarioError::Invalid {
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
            help: help.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ScenarioError {
        let mut message = e.message().trim().to_string();
        if message.contains("enum RawSeed") {
            message = "the seed is not a whole number from 0 to 18446744073709551615".into();
        }
        let help = if message.starts_with("the seed") {
            "write seed = 1, or quote a seed above 9223372036854775807 (TOML integers stop there), e.g. seed = \"12612280629371687117\""
        } else if message.contains("unknown field") {
            "remove the key or correct its spelling; the keys this table accepts are listed above"
        } else if message.contains("missing field") {
            "add the missing key to this table"
        } else if message.contains("invalid type") {
            "give the value the type named above; durations and distributions are quoted strings such as \"10s\""
        } else if message.contains("did not match any variant") {
            "write `variants` as \"all\", one variant name, or a list of names such as [\"pre-8095\", \"pr-8095\"]"
        } else {
            "fix the TOML syntax at this position (https://toml.io/en/v1.0.0)"
        };
        let span = e.span().unwrap_or(0..0);
        self.err(span, message, help)
    }

    fn duration(&self, t: &Text, what: &str) -> Result<u64, ScenarioError> {
        parse_duration(t.get_ref())
            .map_err(|e| self.err(t.span(), format!("{what}: {e}"), DURATION_HELP))
    }

    fn opt_duration(
        &self,
        t: &Option<Text>,
        what: &str,
        default: u64,
    ) -> Result<u64, ScenarioError> {
        t.as_ref().map_or(Ok(default), |t| self.duration(t, what))
    }

    fn dist(&self, t: &Text, what: &str) -> Result<Dist, ScenarioError> {
        Dist::parse(t.get_ref()).map_err(|e| self.err(t.span(), format!("{what}: {e}"), DIST_HELP))
    }

    fn opt_dist(&self, t: &Option<Text>, what: &str, default: Dist) -> Result<Dist, ScenarioError> {
        t.as_ref().map_or(Ok(default), |t| self.dist(t, what))
    }

    /// A distribution that may be left out (it then switches a model off).
    fn maybe_dist(&self, t: &Option<Text>, what: &str) -> Result<Option<Dist>, ScenarioError> {
        t.as_ref().map(|t| self.dist(t, what)).transpose()
    }

    /// The `[connect]` table: a preset, then the keys given.
    fn connect(&self, raw: &RawConnect) -> Result<ConnectParams, ScenarioError> {
        let mut params = match raw
            .preset
            .as_ref()
            .map(|t| (t.get_ref().as_str(), t.span()))
        {
            None | Some(("test", _)) => ConnectParams::fast(),
            Some(("grpc", _)) => ConnectParams::default(),
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    format!("unknown connect preset `{other}`"),
                    "write preset = \"test\" (the real test's fastConnectParams) or \"grpc\" (grpc-go's defaults)",
                ));
            }
        };
        let b = &mut params.backoff;
        b.base_delay = self.opt_duration(&raw.base_delay, "base_delay", b.base_delay)?;
        b.max_delay = self.opt_duration(&raw.max_delay, "max_delay", b.max_delay)?;
        if let Some(m) = &raw.multiplier {
            let v = *m.get_ref();
            if !(v.is_finite() && v >= 0.0) {
                return Err(self.err(
                    m.span(),
                    format!("multiplier = {v} cannot be negative"),
                    "write a number of at least 0, e.g. multiplier = 1.6 (grpc-go's default)",
                ));
            }
            b.multiplier = v;
        }
        b.jitter = self.probability(&raw.jitter, "jitter", b.jitter, "0.2")?;
        params.min_connect_timeout = self.opt_duration(
            &raw.min_connect_timeout,
            "min_connect_timeout",
            params.min_connect_timeout,
        )?;
        Ok(params)
    }

    /// A probability, `default` if left out; `example` goes in the help.
    fn probability(
        &self,
        p: &Option<Spanned<f64>>,
        what: &str,
        default: f64,
        example: &str,
    ) -> Result<f64, ScenarioError> {
        match p {
            None => Ok(default),
            Some(p) if (0.0..=1.0).contains(p.get_ref()) => Ok(*p.get_ref()),
            Some(p) => Err(self.err(
                p.span(),
                format!("{what} = {} is not a probability", p.get_ref()),
                format!("write a number between 0 and 1, e.g. {example}"),
            )),
        }
    }

    fn backend(&self, names: &[String], t: &Text) -> Result<usize, ScenarioError> {
        names.iter().position(|n| n == t.get_ref()).ok_or_else(|| {
            self.err(
                t.span(),
                format!("unknown backend `{}`", t.get_ref()),
                format!(
                    "use the name of a [[backend]] table ({}), or add a backend with this name",
                    names.join(", ")
                ),
            )
        })
    }

    fn validate(&self, raw: RawScenario, path: &Path) -> Result<Scenario, ScenarioError> {
        let name = raw.scenario.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(self.err(
                raw.scenario.name.span(),
                "the scenario name is empty",
                "give the scenario a short name, e.g. its file name",
            ));
        }

        let probe = raw.probe.as_ref().map(|p| self.probe(p)).transpose()?;
        let (backends, names, priorities, health) = match &probe {
            None => self.topology(&raw)?,
            Some(_) => {
                // The probe harness has no channel: backends, priorities
                // and health transitions have nothing to act on.
                let stray = [
                    raw.backend.first().map(|b| ("[[backend]]", b.name.span())),
                    raw.priority
                        .first()
                        .map(|p| ("[[priority]]", p.backends.span())),
                    raw.health.first().map(|h| ("[[health]]", h.at.span())),
                ];
                if let Some((table, span)) = stray.into_iter().flatten().next() {
                    return Err(self.err(
                        span,
                        format!("a scenario with a [probe] table cannot have {table} tables"),
                        "the probe harness drives the priority policy directly: list its children in [probe] children = [\"p0\", \"p1\"] and remove the backends, priorities and health transitions",
                    ));
                }
                (Vec::new(), Vec::new(), Vec::new(), Vec::new())
            }
        };

        // Balancer.
        let child_policy = match raw
            .balancer
            .child_policy
            .as_ref()
            .map(|t| (t.get_ref().as_str(), t.span()))
        {
            None | Some(("round_robin", _)) => ChildPolicy::RoundRobin,
            Some(("pick_first", _)) => ChildPolicy::PickFirst,
            Some(("ring_hash", _)) => ChildPolicy::RingHash,
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    format!("unknown child policy `{other}`"),
                    "write child_policy = \"round_robin\", \"pick_first\" or \"ring_hash\"",
                ));
            }
        };
        let balancer = BalancerConfig {
            init_timeout: self.opt_duration(
                &raw.balancer.init_timeout,
                "init_timeout",
                10 * SEC,
            )?,
            cache_timeout: self.opt_duration(
                &raw.balancer.cache_timeout,
                "cache_timeout",
                15 * 60 * SEC,
            )?,
            child_policy,
        };

        let connect = self.connect(&raw.connect)?;

        // Client script.
        let children = probe.as_ref().map(|p| p.children.as_slice());
        let client = ClientScript {
            steps: self.script(&raw.client.script, &names, children)?,
            leak_check_grace: self.opt_duration(
                &raw.client.leak_check_grace,
                "leak_check_grace",
                10 * SEC,
            )?,
            test_logger: raw.client.test_logger.unwrap_or(false),
        };

        // Runtime model of the timed strategy.
        let rt = &raw.runtime;
        let defaults = RuntimeModel::default();
        let gomaxprocs = match &rt.gomaxprocs {
            None => defaults.gomaxprocs,
            Some(g) => match u32::try_from(*g.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    return Err(self.err(
                        g.span(),
                        format!("gomaxprocs = {} is out of range", g.get_ref()),
                        "write a whole number of processors, at least 1",
                    ));
                }
            },
        };
        let pause_prob =
            self.probability(&rt.pause_prob, "pause_prob", defaults.pause_prob, "0.001")?;
        let runtime = RuntimeModel {
            gomaxprocs,
            step_cost: self.opt_dist(&rt.step_cost, "step_cost", defaults.step_cost)?,
            wake_latency: self.opt_dist(&rt.wake_latency, "wake_latency", defaults.wake_latency)?,
            pause_prob,
            pause: self.opt_dist(&rt.pause, "pause", defaults.pause)?,
            handoff: self.maybe_dist(&rt.handoff, "handoff")?,
            steal: self.maybe_dist(&rt.steal, "steal")?,
            steal_prob: self.probability(&rt.steal_prob, "steal_prob", 1.0, "0.7")?,
        };
        if let (Some(t), None) = (&rt.handoff, &rt.steal) {
            return Err(self.err(
                t.span(),
                "`handoff` is set without `steal`",
                "set steal = \"...\" too: the two together turn on the runnext model of wake-ups",
            ));
        }

        // Run defaults.
        let r = &raw.run;
        let runs = match &r.runs {
            None => 10_000,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref() as u64,
            Some(n) => {
                return Err(self.err(
                    n.span(),
                    format!("runs = {} is not a positive number", n.get_ref()),
                    "write the number of runs per variant, at least 1",
                ));
            }
        };
        let seed = match &r.seed {
            None => 1,
            Some(s) => {
                let bad = |what: String| {
                    self.err(
                        s.span(),
                        what,
                        "write a seed from 0 to 18446744073709551615; above 9223372036854775807 quote it, e.g. seed = \"12612280629371687117\"",
                    )
                };
                match s.get_ref() {
                    RawSeed::Int(n) => {
                        u64::try_from(*n).map_err(|_| bad(format!("seed = {n} is negative")))?
                    }
                    RawSeed::Text(t) => t.trim().parse::<u64>().map_err(|_| {
                        bad(format!(
                            "seed = \"{t}\" is not a whole number from 0 to 2^64 - 1"
                        ))
                    })?,
                }
            }
        };
        let strategy = match &r.strategy {
            None => StrategyKind::Timed,
            Some(t) => StrategyKind::parse(t.get_ref()).map_err(|e| {
                self.err(
                    t.span(),
                    e,
                    "write strategy = \"timed\", \"random\" or \"pct:3\"",
                )
            })?,
        };
        let variants = match &r.variants {
            None => Variant::ALL.to_vec(),
            Some(v) => parse_variants_value(v.get_ref()).map_err(|e| self.err(v.span(), e, "write variants = \"all\" or a list of names such as [\"pre-8095\", \"pr-8095\"]"))?,
        };

        Ok(Scenario {
            path: path.to_path_buf(),
            name,
            description: raw.scenario.description.trim().to_string(),
            backends,
            priorities,
            health,
            balancer,
            connect,
            client,
            probe,
            runtime,
            run: RunDefaults {
                runs,
                seed,
                strategy,
                variants,
            },
        })
    }

    /// The channel's world: backends, their names, priorities and the
    /// scripted health timeline.
    fn topology(&self, raw: &RawScenario) -> Result<Topology, ScenarioError> {
        // Backends.
        if raw.backend.is_empty() {
            return Err(self.err(
                0..0,
                "the scenario has no backends",
                "add at least one [[backend]] table with a `name`",
            ));
        }
        let mut backends = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for b in &raw.backend {
            let bname = b.name.get_ref().trim().to_string();
            if bname.is_empty() {
                return Err(self.err(
                    b.name.span(),
                    "a backend name is empty",
                    "give every backend a non-empty name such as \"s0\"",
                ));
            }
            if names.contains(&bname) {
                return Err(self.err(
                    b.name.span(),
                    format!("backend `{bname}` is defined twice"),
                    "give every backend a distinct name",
                ));
            }
            let down = match b.down.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
                None | Some(("refuse", _)) => DownBehaviour::Refuse,
                Some(("timeout", _)) => DownBehaviour::Timeout,
                Some((other, span)) => {
                    return Err(self.err(span, format!("unknown down behaviour `{other}`"), "write down = \"refuse\" (connections refused at once) or down = \"timeout\" (connections hang until connect_timeout)"));
                }
            };
            let initially_up = match b.initial.as_ref().map(|d| (d.get_ref().as_str(), d.span())) {
                None | Some(("up", _)) => true,
                Some(("down", _)) => false,
                Some((other, span)) => {
                    return Err(self.err(
                        span,
                        format!("unknown initial state `{other}`"),
                        "write initial = \"up\" or initial = \"down\"",
                    ));
                }
            };
            let flap = match &b.flap {
                None => None,
                Some(f) => Some(Flap {
                    up: self.dist(&f.up, "flap.up")?,
                    down: self.dist(&f.down, "flap.down")?,
                }),
            };
            backends.push(Backend {
                name: bname.clone(),
                latency: self.opt_dist(&b.latency, "latency", Dist::Const(200 * US))?,
                down,
                connect_timeout: self.opt_duration(
                    &b.connect_timeout,
                    "connect_timeout",
                    100 * MS,
                )?,
                initially_up,
                flap,
            });
            names.push(bname);
        }

        // Priorities: each non-empty, each backend in exactly one.
        if raw.priority.is_empty() {
            return Err(self.err(0..0, "the scenario has no priorities", "add [[priority]] tables, highest priority first, each with backends = [\"name\", ...]"));
        }
        let mut priority_of: Vec<Option<usize>> = vec![None; backends.len()];
        let mut priorities = Vec::new();
        for (p, rp) in raw.priority.iter().enumerate() {
            if rp.backends.get_ref().is_empty() {
                return Err(self.err(rp.backends.span(), format!("priority p{p} has no backends"), "list at least one backend in every [[priority]] table, or delete the empty table"));
            }
            let mut members = Vec::new();
            for t in rp.backends.get_ref() {
                let i = self.backend(&names, t)?;
                if let Some(q) = priority_of[i] {
                    return Err(self.err(
                        t.span(),
                        format!("backend `{}` is already in priority p{q}", names[i]),
                        "list every backend in exactly one priority",
                    ));
                }
                priority_of[i] = Some(p);
                members.push(i);
            }
            let pname = rp
                .name
                .as_ref()
                .map_or_else(|| format!("p{p}"), |n| n.get_ref().clone());
            priorities.push(Priority {
                name: pname,
                backends: members,
            });
        }
        if let Some(i) = priority_of.iter().position(Option::is_none) {
            return Err(self.err(
                raw.backend[i].name.span(),
                format!("backend `{}` is in no priority", names[i]),
                "add it to the `backends` list of one [[priority]] table, or remove the backend",
            ));
        }

        // Scripted health timeline, in time order.
        let mut health = Vec::new();
        let mut last = 0;
        for h in &raw.health {
            let at = self.duration(&h.at, "health.at")?;
            if at < last {
                return Err(self.err(
                    h.at.span(),
                    format!(
                        "health transition at {} comes before the previous one",
                        h.at.get_ref()
                    ),
                    "list [[health]] tables in order of their `at` times",
                ));
            }
            last = at;
            let backend = self.backend(&names, &h.backend)?;
            let up = match h.state.get_ref().as_str() {
                "up" => true,
                "down" => false,
                other => {
                    return Err(self.err(
                        h.state.span(),
                        format!("unknown health state `{other}`"),
                        "write state = \"up\" or state = \"down\"",
                    ));
                }
            };
            health.push(HealthEvent { at, backend, up });
        }
        Ok((backends, names, priorities, health))
    }

    fn probe(&self, p: &raw::RawProbe) -> Result<ProbeHarness, ScenarioError> {
        let list = p.children.get_ref();
        if list.len() < 2 {
            return Err(self.err(
                p.children.span(),
                "the probe harness needs at least two children",
                "list the children highest priority first, e.g. children = [\"p0\", \"p1\"]",
            ));
        }
        let mut children: Vec<String> = Vec::new();
        for t in list {
            let name = t.get_ref().trim().to_string();
            if name.is_empty() || children.contains(&name) {
                return Err(self.err(
                    t.span(),
                    format!("child name `{name}` is empty or repeated"),
                    "give every child a distinct non-empty name such as \"p0\"",
                ));
            }
            children.push(name);
        }
        Ok(ProbeHarness { children })
    }

    fn script(
        &self,
        script: &Spanned<Vec<RawStep>>,
        names: &[String],
        children: Option<&[String]>,
    ) -> Result<Vec<ClientStep>, ScenarioError> {
        let steps = script.get_ref();
        if steps.is_empty() {
            return Err(self.err(
                script.span(),
                "the client script is empty",
                "list the client's steps, ending with { op = \"close\" }",
            ));
        }
        let mut out = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let op = s.op.get_ref().as_str();
            // Which optional keys each op takes.
            const CHANNEL_OPS: &str = "rpc, rpc_until, stop_listener, restart_listener, update_config, sleep, spin, close";
            const PROBE_OPS: &str = "report, wait_built, wait_picker, sleep, spin, close";
            let allowed: &[&str] = match (op, children.is_some()) {
                ("rpc", false) => &["expect", "wait_for_ready", "timeout"],
                ("rpc_until", false) => &["backend", "wait_for_ready", "timeout"],
                ("stop_listener" | "restart_listener", false) => &["backend"],
                ("update_config", false) => &["priorities", "child_policy"],
                ("report", true) => &["child", "state"],
                ("wait_built" | "wait_picker", true) => &["child"],
                ("sleep" | "spin", _) => &["for"],
                ("close", _) => &[],
                (other, probe) => {
                    let (ops, kind) = if probe {
                        (PROBE_OPS, "a scenario with a [probe] table")
                    } else {
                        (CHANNEL_OPS, "a scenario without a [probe] table")
                    };
                    return Err(self.err(
                        s.op.span(),
                        format!("unknown client op `{other}` for {kind}"),
                        format!("use one of {ops}"),
                    ));
                }
            };
            let present: [(&str, Option<Range<usize>>); 9] = [
                ("expect", s.expect.as_ref().map(Spanned::span)),
                ("backend", s.backend.as_ref().map(Spanned::span)),
                (
                    "wait_for_ready",
                    s.wait_for_ready.as_ref().map(Spanned::span),
                ),
                ("timeout", s.timeout.as_ref().map(Spanned::span)),
                ("for", s.for_.as_ref().map(Spanned::span)),
                ("child", s.child.as_ref().map(Spanned::span)),
                ("state", s.state.as_ref().map(Spanned::span)),
                ("priorities", s.priorities.as_ref().map(Spanned::span)),
                ("child_policy", s.child_policy.as_ref().map(Spanned::span)),
            ];
            for (key, span) in present {
                if let Some(span) = span
                    && !allowed.contains(&key)
                {
                    let takes = if allowed.is_empty() {
                        "no other keys".to_string()
                    } else {
                        allowed.join(", ")
                    };
                    return Err(self.err(
                        span,
                        format!("op `{op}` does not take `{key}`"),
                        format!("remove `{key}`; `{op}` takes {takes}"),
                    ));
                }
            }
            let need_backend = |what: &str| -> Result<usize, ScenarioError> {
                match &s.backend {
                    Some(b) => self.backend(names, b),
                    None => Err(self.err(
                        s.op.span(),
                        format!("op `{what}` needs a `backend`"),
                        format!("add backend = \"{}\"", names[0]),
                    )),
                }
            };
            let need_child = || -> Result<usize, ScenarioError> {
                let list = children.unwrap_or_default();
                let Some(c) = &s.child else {
                    return Err(self.err(
                        s.op.span(),
                        format!("op `{op}` needs a `child`"),
                        format!("add child = \"{}\"", list.first().map_or("p0", |n| n)),
                    ));
                };
                list.iter().position(|n| n == c.get_ref()).ok_or_else(|| {
                    self.err(
                        c.span(),
                        format!("unknown child `{}`", c.get_ref()),
                        format!(
                            "use a child listed in [probe] children ({})",
                            list.join(", ")
                        ),
                    )
                })
            };
            let need_for = |what: &str| -> Result<Dist, ScenarioError> {
                match &s.for_ {
                    Some(f) => self.dist(f, &format!("{what}.for")),
                    None => Err(self.err(
                        s.op.span(),
                        format!("op `{what}` needs `for`"),
                        "add for = \"100ms\" (or a distribution such as \"uniform(0, 5ms)\")",
                    )),
                }
            };
            let wait_for_ready = s.wait_for_ready.as_ref().is_some_and(|w| *w.get_ref());
            let timeout = self.opt_duration(&s.timeout, "timeout", 10 * SEC)?;
            let step = match op {
                "rpc" => ClientStep::Rpc {
                    expect: s
                        .expect
                        .as_ref()
                        .map(|e| self.backend(names, e))
                        .transpose()?,
                    wait_for_ready,
                    timeout,
                },
                "rpc_until" => ClientStep::RpcUntil {
                    backend: need_backend(op)?,
                    wait_for_ready,
                    timeout,
                },
                "stop_listener" => ClientStep::StopListener {
                    backend: need_backend(op)?,
                },
                "restart_listener" => ClientStep::RestartListener {
                    backend: need_backend(op)?,
                },
                "update_config" => self.update_config(s, names)?,
                "sleep" => ClientStep::Sleep {
                    duration: need_for(op)?,
                },
                "spin" => ClientStep::Spin {
                    duration: need_for(op)?,
                },
                "report" => {
                    let child = need_child()?;
                    let state = match s.state.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
                        Some(("ready", _)) => ConnectivityState::Ready,
                        Some(("connecting", _)) => ConnectivityState::Connecting,
                        Some(("idle", _)) => ConnectivityState::Idle,
                        Some(("transient_failure", _)) => ConnectivityState::TransientFailure,
                        Some((other, span)) => {
                            return Err(self.err(
                                    span,
                                    format!("unknown state `{other}`"),
                                    "write state = \"ready\", \"connecting\", \"idle\" or \"transient_failure\"",
                                ));
                        }
                        None => {
                            return Err(self.err(
                                s.op.span(),
                                "op `report` needs a `state`",
                                "add state = \"ready\" (or connecting, idle, transient_failure)",
                            ));
                        }
                    };
                    ClientStep::Report { child, state }
                }
                "wait_built" => ClientStep::WaitBuilt {
                    child: need_child()?,
                },
                "wait_picker" => ClientStep::WaitPicker {
                    child: need_child()?,
                },
                _ => {
                    if i + 1 != steps.len() {
                        return Err(self.err(
                            s.op.span(),
                            "`close` must be the last step of the client script",
                            "move { op = \"close\" } to the end; the leak check starts after it",
                        ));
                    }
                    ClientStep::Close
                }
            };
            out.push(step);
        }
        if out.last() != Some(&ClientStep::Close) {
            return Err(self.err(
                script.span(),
                "the client script does not close the channel",
                "end the script with { op = \"close\" }: the leak check runs after the close",
            ));
        }
        Ok(out)
    }
}

impl Cx<'_> {
    /// An `update_config` step: every priority non-empty, every backend
    /// known and in at most one priority, a child policy the channel runs.
    fn update_config(&self, s: &RawStep, names: &[String]) -> Result<ClientStep, ScenarioError> {
        let Some(list) = &s.priorities else {
            return Err(self.err(
                s.op.span(),
                "op `update_config` needs `priorities`",
                format!(
                    "add priorities = [[\"{}\"]], the backends of each priority, highest first",
                    names[0]
                ),
            ));
        };
        if list.get_ref().is_empty() {
            return Err(self.err(
                list.span(),
                "`priorities` of `update_config` is empty",
                "list at least one priority, e.g. priorities = [[\"s1\"], [\"s0\"]]; a config with no priorities is not modelled",
            ));
        }
        let mut placed: Vec<Option<usize>> = vec![None; names.len()];
        let mut priorities = Vec::new();
        for (p, rp) in list.get_ref().iter().enumerate() {
            if rp.get_ref().is_empty() {
                return Err(self.err(
                    rp.span(),
                    format!("priority p{p} of `update_config` has no backends"),
                    "list at least one backend in every priority, or delete the empty list",
                ));
            }
            let mut members = Vec::new();
            for t in rp.get_ref() {
                let i = self.backend(names, t)?;
                if let Some(q) = placed[i] {
                    return Err(self.err(
                        t.span(),
                        format!("backend `{}` is already in priority p{q}", names[i]),
                        "list every backend in at most one priority",
                    ));
                }
                placed[i] = Some(p);
                members.push(i);
            }
            priorities.push(members);
        }
        let child_policy = match s
            .child_policy
            .as_ref()
            .map(|t| (t.get_ref().as_str(), t.span()))
        {
            None => None,
            Some(("round_robin", _)) => Some(ChildPolicy::RoundRobin),
            Some(("pick_first", _)) => Some(ChildPolicy::PickFirst),
            Some(("ring_hash", span)) => {
                return Err(self.err(
                    span,
                    "child policy `ring_hash` cannot be pushed: the channel has no ring_hash policy",
                    "write child_policy = \"round_robin\" or \"pick_first\", or leave it out to keep the current one",
                ));
            }
            Some((other, span)) => {
                return Err(self.err(
                    span,
                    format!("unknown child policy `{other}`"),
                    "write child_policy = \"round_robin\" or \"pick_first\", or leave it out to keep the current one",
                ));
            }
        };
        Ok(ClientStep::UpdateConfig {
            priorities,
            child_policy,
        })
    }
}

fn parse_variants_value(v: &RawVariants) -> Result<Vec<Variant>, String> {
    match v {
        RawVariants::One(s) => parse_variants(s),
        RawVariants::List(list) => {
            if list.is_empty() {
                return Err("the variant list is empty".into());
            }
            let mut out = Vec::new();
            for s in list {
                let v = Variant::parse(s)?;
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(out)
        }
    }
}

/// Parses `all` or a comma-separated list of variants (aliases allowed),
/// without duplicates, in the order given.
pub fn parse_variants(s: &str) -> Result<Vec<Variant>, String> {
    if s.trim() == "all" {
        return Ok(Variant::ALL.to_vec());
    }
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let v = Variant::parse(part)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("no variant given: use all or names such as pre-8095,pr-8095".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
