//! The scenario file as written: the serde schema, before validation.
//!
//! Every value that validation may reject is kept `Spanned`, so an error can
//! point at its line and column. Every table denies unknown keys.

use serde::Deserialize;
use toml::Spanned;

pub type Text = Spanned<String>;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub scenario: RawHeader,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
    #[serde(default)]
    pub priority: Vec<RawPriority>,
    #[serde(default)]
    pub health: Vec<RawHealth>,
    #[serde(default)]
    pub balancer: RawBalancer,
    #[serde(default)]
    pub connect: RawConnect,
    pub client: RawClient,
    pub probe: Option<RawProbe>,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub run: RawRun,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: Text,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Text,
    /// Connection latency distribution.
    pub latency: Option<Text>,
    /// `refuse` or `timeout`.
    pub down: Option<Text>,
    /// Connect timeout used when `down = "timeout"`.
    pub connect_timeout: Option<Text>,
    /// `up` (default) or `down` at time zero.
    pub initial: Option<Text>,
    pub flap: Option<RawFlap>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawFlap {
    pub up: Text,
    pub down: Text,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPriority {
    pub name: Option<Text>,
    pub backends: Spanned<Vec<Text>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub at: Text,
    pub backend: Text,
    pub state: Text,
}

/// The validation harness: the priority policy driven directly, with probe
/// children and no channel.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Child names, highest priority first.
    pub children: Spanned<Vec<Text>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    pub init_timeout: Option<Text>,
    pub cache_timeout: Option<Text>,
    pub child_policy: Option<Text>,
}

/// The channel's `grpc.ConnectParams`: reconnect backoff and the minimum
/// connect timeout.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConnect {
    /// `test` (the real test's `fastConnectParams`) or `grpc` (grpc-go's
    /// defaults); the other keys override it.
    pub preset: Option<Text>,
    pub base_delay: Option<Text>,
    pub multiplier: Option<Spanned<f64>>,
    pub jitter: Option<Spanned<f64>>,
    pub max_delay: Option<Text>,
    pub min_connect_timeout: Option<Text>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub leak_check_grace: Option<Text>,
    pub test_logger: Option<bool>,
    pub script: Spanned<Vec<RawStep>>,
}

/// One client step. A flat table rather than a serde-tagged enum: tagged enums
/// buffer their content, which loses the spans errors need. Which keys an `op`
/// accepts is checked during validation.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub op: Text,
    pub expect: Option<Text>,
    pub backend: Option<Text>,
    pub wait_for_ready: Option<Spanned<bool>>,
    pub timeout: Option<Text>,
    #[serde(rename = "for")]
    pub for_: Option<Text>,
    pub child: Option<Text>,
    pub state: Option<Text>,
    /// `update_config`: the backends of each priority, highest first.
    pub priorities: Option<Spanned<Vec<Spanned<Vec<Text>>>>>,
    /// `update_config`: the policy under each priority.
    pub child_policy: Option<Text>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub gomaxprocs: Option<Spanned<i64>>,
    pub step_cost: Option<Text>,
    pub wake_latency: Option<Text>,
    pub pause_prob: Option<Spanned<f64>>,
    pub pause: Option<Text>,
    pub handoff: Option<Text>,
    pub steal: Option<Text>,
    pub steal_prob: Option<Spanned<f64>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub runs: Option<Spanned<i64>>,
    /// A number, or a string holding one: TOML integers stop at i64::MAX,
    /// and seeds are u64 (as `lbsim run` prints them).
    pub seed: Option<Spanned<RawSeed>>,
    pub strategy: Option<Text>,
    pub variants: Option<Spanned<RawVariants>>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawSeed {
    Int(i64),
    Text(String),
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum RawVariants {
    One(String),
    List(Vec<String>),
}
