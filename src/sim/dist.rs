//! Distributions of durations in virtual nanoseconds, for the timed strategy's
//! costs and pauses and for the model's latencies.
//!
//! Text form (used in scenario files): `const(2us)`, `uniform(1ms, 5ms)`,
//! `exp(300ns)` (mean), `lognormal(200ns, 0.5)` (median, sigma),
//! `pareto(20us, 1.5, 10ms)` (minimum, shape, cap). A bare duration such as
//! `5ms` means `const(5ms)`.

use std::fmt;

use rand::Rng;

use super::rng::unit;

#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Const(u64),
    Uniform { lo: u64, hi: u64 },
    Exp { mean: u64 },
    LogNormal { median: u64, sigma: f64 },
    Pareto { min: u64, alpha: f64, cap: u64 },
}

impl Dist {
    pub fn sample(&self, r: &mut impl Rng) -> u64 {
        match *self {
            Dist::Const(v) => v,
            Dist::Uniform { lo, hi } => {
                lo + (((hi - lo + 1) as u128 * u128::from(r.next_u64())) >> 64) as u64
            }
            Dist::Exp { mean } => (-(1.0 - unit(r)).ln() * mean as f64) as u64,
            Dist::LogNormal { median, sigma } => {
                (median as f64 * (sigma * std_normal(r)).exp()) as u64
            }
            Dist::Pareto { min, alpha, cap } => {
                let x = min as f64 / (1.0 - unit(r)).powf(1.0 / alpha);
                (x as u64).min(cap)
            }
        }
    }

    /// The mean (capped Pareto: the mean of the capped variable), in ns.
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Const(v) => v as f64,
            Dist::Uniform { lo, hi } => (lo + hi) as f64 / 2.0,
            Dist::Exp { mean } => mean as f64,
            Dist::LogNormal { median, sigma } => median as f64 * (sigma * sigma / 2.0).exp(),
            Dist::Pareto { min, alpha, cap } => {
                let (m, c) = (min as f64, cap as f64);
                if c <= m {
                    return c;
                }
                // E[min(X, c)] = integral of the survival function up to c.
                let tail = if (alpha - 1.0).abs() < 1e-9 {
                    m * (c / m).ln()
                } else {
                    m / (alpha - 1.0) * (1.0 - (m / c).powf(alpha - 1.0))
                };
                m + tail
            }
        }
    }

    pub fn parse(s: &str) -> Result<Dist, String> {
        let s = s.trim();
        let Some(open) = s.find('(') else {
            return parse_duration(s).map(Dist::Const).map_err(|e| {
                format!("{e}; a distribution is a duration like `5ms` or one of const(..), uniform(lo, hi), exp(mean), lognormal(median, sigma), pareto(min, shape, cap)")
            });
        };
        if !s.ends_with(')') {
            return Err(format!("`{s}`: missing closing parenthesis"));
        }
        let name = s[..open].trim();
        let args: Vec<&str> = s[open + 1..s.len() - 1].split(',').map(str::trim).collect();
        let want = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "`{s}`: {name} takes {n} argument(s), got {}",
                    args.len()
                ))
            }
        };
        let num = |a: &str| -> Result<f64, String> {
            a.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("`{s}`: `{a}` must be a positive number"))
        };
        let d = match name {
            "const" => {
                want(1)?;
                Dist::Const(parse_duration(args[0])?)
            }
            "uniform" => {
                want(2)?;
                let (lo, hi) = (parse_duration(args[0])?, parse_duration(args[1])?);
                if lo > hi {
                    return Err(format!("`{s}`: the low end must not exceed the high end"));
                }
                Dist::Uniform { lo, hi }
            }
            "exp" => {
                want(1)?;
                Dist::Exp {
                    mean: parse_duration(args[0])?,
                }
            }
            "lognormal" => {
                want(2)?;
                Dist::LogNormal {
                    median: parse_duration(args[0])?,
                    sigma: num(args[1])?,
                }
            }
            "pareto" => {
                want(3)?;
                let (min, alpha, cap) = (
                    parse_duration(args[0])?,
                    num(args[1])?,
                    parse_duration(args[2])?,
                );
                if cap < min {
                    return Err(format!("`{s}`: the cap must be at least the minimum"));
                }
                Dist::Pareto { min, alpha, cap }
            }
            _ => {
                return Err(format!(
                    "`{s}`: unknown distribution `{name}`; use const, uniform, exp, lognormal or pareto"
                ));
            }
        };
        Ok(d)
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Const(v) => write!(f, "const({})", fmt_duration(*v)),
            Dist::Uniform { lo, hi } => {
                write!(f, "uniform({}, {})", fmt_duration(*lo), fmt_duration(*hi))
            }
            Dist::Exp { mean } => write!(f, "exp({})", fmt_duration(*mean)),
            Dist::LogNormal { median, sigma } => {
                write!(f, "lognormal({}, {sigma})", fmt_duration(*median))
            }
            Dist::Pareto { min, alpha, cap } => {
                write!(
                    f,
                    "pareto({}, {alpha}, {})",
                    fmt_duration(*min),
                    fmt_duration(*cap)
                )
            }
        }
    }
}

/// Box-Muller; two uniform draws per sample.
fn std_normal(r: &mut impl Rng) -> f64 {
    let u1 = 1.0 - unit(r);
    let u2 = unit(r);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Parses `150ns`, `2.5us`, `10ms`, `1.5s`, `15m`, `0`. Negative or unitless
/// non-zero values are rejected with a sentence saying what to write.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.starts_with('-') {
        return Err(format!(
            "duration `{s}` is negative; durations must be zero or more"
        ));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("duration `{s}` has no unit; write e.g. `{s}ms` (units: ns, us, ms, s, m)")
        })?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration `{s}`: `{num}` is not a number"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "duration `{s}`: unknown unit `{unit}` (use ns, us, ms, s, m or h)"
            ));
        }
    };
    let ns = value * scale;
    if !ns.is_finite() || ns > 1e18 {
        return Err(format!("duration `{s}` is too large"));
    }
    Ok(ns.round() as u64)
}

/// Renders nanoseconds with the largest unit that keeps it short: `1.5s`, `200us`.
pub fn fmt_duration(ns: u64) -> String {
    let (v, unit) = if ns >= 60_000_000_000 && ns.is_multiple_of(60_000_000_000) {
        (ns as f64 / 60e9, "m")
    } else if ns >= 1_000_000_000 {
        (ns as f64 / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns as f64 / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns as f64 / 1e3, "us")
    } else {
        (ns as f64, "ns")
    };
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("150ns"), Ok(150));
        assert_eq!(parse_duration("2.5us"), Ok(2_500));
        assert_eq!(parse_duration("15m"), Ok(900_000_000_000));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("10parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert_eq!(fmt_duration(1_500_000_000), "1.5s");
        assert_eq!(fmt_duration(900_000_000_000), "15m");
    }

    #[test]
    fn distributions_round_trip_and_sample_near_their_mean() {
        for text in [
            "const(2us)",
            "uniform(1ms, 5ms)",
            "exp(300ns)",
            "lognormal(200ns, 0.5)",
            "pareto(20us, 1.5, 10ms)",
        ] {
            let d = Dist::parse(text).unwrap();
            assert_eq!(Dist::parse(&d.to_string()).unwrap(), d, "{text}");
            let mut r = rng::rng(3, 0);
            let n = 200_000;
            let mean = (0..n).map(|_| d.sample(&mut r) as f64).sum::<f64>() / n as f64;
            let want = d.mean();
            assert!(
                (mean - want).abs() / want < 0.05,
                "{text}: sampled mean {mean}, expected {want}"
            );
        }
    }

    #[test]
    fn bad_distributions_say_why() {
        assert!(
            Dist::parse("gauss(1ms)")
                .unwrap_err()
                .contains("unknown distribution")
        );
        assert!(
            Dist::parse("uniform(5ms, 1ms)")
                .unwrap_err()
                .contains("low end")
        );
        assert!(
            Dist::parse("exp(1ms, 2ms)")
                .unwrap_err()
                .contains("takes 1")
        );
    }
}
