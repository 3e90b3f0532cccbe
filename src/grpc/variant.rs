//! The grpc-go versions lbsim can run. Everything is shared; each difference
//! is a short branch at the place the Go code differs, marked with the
//! variant it belongs to.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// Before PR #4308 (2021): balancergroup `Close` marks the group stopped
    /// before clearing the cache, so eviction callbacks of cached children
    /// find it stopped and a child cached at close always leaks.
    Pre4308,
    /// grpc-go at `e0ac3acff`, the parent of PR #8095: the race of #7783.
    Pre8095,
    /// PR #8095 (`aa629e0ef`): closing is terminal; `outgoingClosed` is set
    /// under the outgoing lock before the cache is cleared.
    Pr8095,
    /// The alternative fix: the priority policy's `Close` holds its mutex
    /// while it closes the balancergroup.
    PriorityLock,
    /// grpc-go at `ccc8d7bda` (gRFC A115, on top of PR #8095): children removed
    /// from the config are closed immediately; demoted children are still
    /// cached. With the priority and graceful-switch changes merged between
    /// PR #8095 and it: the init timer is not restarted by CONNECTING after
    /// CONNECTING (9b39ae241), a child's failed config update is a
    /// TRANSIENT_FAILURE (fd539615a), and the graceful switch's Close waits
    /// for its swap goroutines (9b990b635).
    A115,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Pre4308,
        Variant::Pre8095,
        Variant::Pr8095,
        Variant::PriorityLock,
        Variant::A115,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Pre4308 => "pre-4308",
            Variant::Pre8095 => "pre-8095",
            Variant::Pr8095 => "pr-8095",
            Variant::PriorityLock => "priority-lock",
            Variant::A115 => "a115",
        }
    }

    /// Accepts the ids and the aliases `buggy` (pre-8095) and `fixed` (pr-8095).
    pub fn parse(s: &str) -> Result<Variant, String> {
        match s.trim() {
            "pre-4308" => Ok(Variant::Pre4308),
            "pre-8095" | "buggy" => Ok(Variant::Pre8095),
            "pr-8095" | "fixed" => Ok(Variant::Pr8095),
            "priority-lock" => Ok(Variant::PriorityLock),
            "a115" => Ok(Variant::A115),
            other => Err(format!(
                "unknown variant `{other}`: use one of pre-4308, pre-8095 (buggy), pr-8095 (fixed), priority-lock, a115, or all"
            )),
        }
    }

    /// One line for `lbsim variants`: which grpc-go code it is and what it
    /// does with the race of issue #7783.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::Pre4308 => {
                "before PR #4308 (2021): Close marks the group stopped before clearing the cache; a child cached at close always leaks"
            }
            Variant::Pre8095 => {
                "grpc-go before PR #8095 (v1.71.x, alias buggy): the race of issue #7783; a child demoted while Close runs can leak"
            }
            Variant::Pr8095 => {
                "PR #8095 (v1.72.0, alias fixed): closing the balancergroup is terminal, so nothing enters the cache after Close"
            }
            Variant::PriorityLock => {
                "the alternative fix: the priority policy's Close holds its mutex while it closes the balancergroup"
            }
            Variant::A115 => {
                "grpc-go at ccc8d7bda (gRFC A115, after PR #8095): children removed from the config close at once; demoted ones are still cached"
            }
        }
    }

    /// Closing the balancergroup is terminal (PR #8095 and later).
    pub fn terminal_close(self) -> bool {
        matches!(self, Variant::Pr8095 | Variant::A115)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
