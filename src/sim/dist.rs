//! Distributions of durations in virtual nanoseconds, for the timed strategy's
//! costs and pauses and for the model's latencies.
//!
//! Text form (used in scenario files): `const(2us)`, `uniform(1ms, 5ms)`,
//! `exp(300ns)` (mean), `lognormal(200ns, 0.5)` (median, sigma),
//! `pareto(20us, 1.5, 10ms)` (minimum, shape, cap), and a measured histogram
//! `hist(2us..5us=117, 5us..10us=23, ...)` (buckets with their counts; a
//! value is drawn log-uniformly within a bucket chosen by count). A bare
//! duration such as `5ms` means `const(5ms)`.

use std::fmt;

use rand::Rng;

use super::rng::unit;

#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Const(u64),
    Uniform {
        lo: u64,
        hi: u64,
    },
    Exp {
        mean: u64,
    },
    LogNormal {
        median: u64,
        sigma: f64,
    },
    Pareto {
        min: u64,
        alpha: f64,
        cap: u64,
    },
    /// A measured histogram: `(lo, hi, count)` buckets, in the order given.
    Hist(Vec<(u64, u64, u64)>),
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
            Dist::Hist(ref buckets) => {
                let total: u64 = buckets.iter().map(|b| b.2).sum();
                let mut pick = ((u128::from(total) * u128::from(r.next_u64())) >> 64) as u64;
                let &(lo, hi, _) = buckets
                    .iter()
                    .find(|b| {
                        if pick < b.2 {
                            true
                        } else {
                            pick -= b.2;
                            false
                        }
                    })
                    .unwrap_or(&buckets[buckets.len() - 1]);
                let (l, h) = (lo.max(1) as f64, hi.max(1) as f64);
                (l * (h / l).powf(unit(r))) as u64
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
            Dist::Hist(ref buckets) => {
                // Log-uniform within a bucket: mean (h - l) / ln(h / l).
                let total: u64 = buckets.iter().map(|b| b.2).sum();
                let sum: f64 = buckets
                    .iter()
                    .map(|&(lo, hi, n)| {
                        let (l, h) = (lo.max(1) as f64, hi.max(1) as f64);
                        let m = if h > l { (h - l) / (h / l).ln() } else { l };
                        m * n as f64
                    })
                    .sum();
                sum / total as f64
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
            "hist" => {
                let mut buckets = Vec::new();
                for a in &args {
                    let bad = || {
                        format!(
                            "`{s}`: bucket `{a}` must be written LOW..HIGH=COUNT, e.g. 20us..50us=1840"
                        )
                    };
                    let (range, count) = a.split_once('=').ok_or_else(bad)?;
                    let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
                    let (lo, hi) = (parse_duration(lo.trim())?, parse_duration(hi.trim())?);
                    let n: u64 = count.trim().parse().map_err(|_| bad())?;
                    if lo == 0 || hi < lo {
                        return Err(format!("`{s}`: bucket `{a}` needs 0 < LOW <= HIGH"));
                    }
                    buckets.push((lo, hi, n));
                }
                if buckets.iter().all(|b| b.2 == 0) {
                    return Err(format!(
                        "`{s}`: every bucket is empty; give at least one a count"
                    ));
                }
                Dist::Hist(buckets)
            }
            _ => {
                return Err(format!(
                    "`{s}`: unknown distribution `{name}`; use const, uniform, exp, lognormal, pareto or hist"
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
            Dist::Hist(buckets) => {
                f.write_str("hist(")?;
                for (i, (lo, hi, n)) in buckets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}..{}={n}", fmt_duration(*lo), fmt_duration(*hi))?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Bits of the index into a [`Sampler`]'s quantile table.
const TABLE_BITS: u32 = 10;
const TABLE: usize = 1 << TABLE_BITS;
/// Bits of a uniform draw below the table index (53 bits in all).
const FRAC_BITS: u32 = 53 - TABLE_BITS;

/// Draws from one fixed [`Dist`] at the cost of a table lookup, for samplers
/// called at every scheduling decision.
///
/// A lognormal sample is its quantile function at one uniform draw. The
/// quantile function is tabulated at `TABLE + 1` evenly spaced probabilities
/// and interpolated linearly between them; in the first and last interval,
/// where it is steep, it is evaluated directly. One 64-bit draw per sample,
/// no transcendental function except in the tails (2 draws in 1024). Other
/// distributions fall back to [`Dist::sample`].
#[derive(Clone, Debug)]
pub(crate) enum Sampler {
    /// A lognormal distribution, tabulated.
    Table {
        median: u64,
        sigma: f64,
        /// Quantiles at `i / TABLE` in fixed point (`shift` fractional
        /// bits), so that interpolation is integer arithmetic. A fixed-size
        /// array: the index of a draw needs no bounds check.
        table: Box<[u64; TABLE + 1]>,
        shift: u32,
    },
    /// Any other distribution, drawn by [`Dist::sample`].
    Direct(Dist),
}

impl Sampler {
    pub fn new(dist: &Dist) -> Self {
        let Dist::LogNormal { median, sigma } = *dist else {
            return Sampler::Direct(dist.clone());
        };
        let q = |i: usize| lognormal_quantile(median, sigma, i as f64 / TABLE as f64);
        // As many fractional bits (up to 16) as the largest entry leaves room
        // for; the ends are never interpolated (they are 0 and infinity).
        let top = q(TABLE - 1).max(1.0);
        let shift = (62 - (top.log2().ceil() as i64).clamp(0, 62)).min(16) as u32;
        let scale = (1u64 << shift) as f64;
        let mut table = Box::new([0; TABLE + 1]);
        for (i, entry) in table.iter_mut().enumerate() {
            *entry = match i {
                0 => 0,
                TABLE => u64::MAX,
                _ => (q(i) * scale) as u64,
            };
        }
        Sampler::Table {
            median,
            sigma,
            table,
            shift,
        }
    }

    #[inline]
    pub fn sample(&self, r: &mut impl Rng) -> u64 {
        let (median, sigma, table, shift) = match self {
            Sampler::Table {
                median,
                sigma,
                table,
                shift,
            } => (*median, *sigma, table, *shift),
            Sampler::Direct(dist) => return dist.sample(r),
        };
        let bits = r.next_u64() >> 11;
        let i = (bits >> FRAC_BITS) as usize;
        if i == 0 || i == TABLE - 1 {
            // The midpoint of the draw's cell: never 0 or 1.
            let u = (bits as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
            return lognormal_quantile(median, sigma, u) as u64;
        }
        let frac = u128::from(bits & ((1 << FRAC_BITS) - 1));
        let (a, b) = (table[i], table[i + 1]);
        let step = (u128::from(b - a) * frac) >> FRAC_BITS;
        (a + step as u64) >> shift
    }
}

fn lognormal_quantile(median: u64, sigma: f64, p: f64) -> f64 {
    median as f64 * (sigma * std_normal_quantile(p)).exp()
}

/// The standard normal quantile function for `0 < p < 1` (Acklam's rational
/// approximation; relative error below 1.2e-9).
fn std_normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail(p)
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail(1.0 - p)
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
            "hist(2us..5us=449, 20us..50us=3622, 100us..200us=67, 500us..1ms=8)",
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
    fn normal_quantile_matches_known_values() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.841_344_746_068_543, 1.0),
            (0.01, -2.326_347_874_040_841),
            (1e-6, -4.753_424_308_822_899),
            (1.0 - 1e-9, 5.997_807_015_007_686),
        ] {
            let got = std_normal_quantile(p);
            assert!((got - z).abs() < 1e-8, "p {p}: {got}, expected {z}");
        }
    }

    #[test]
    fn table_sampler_keeps_the_lognormal_distribution() {
        for text in [
            "lognormal(150ns, 0.6)",
            "lognormal(1us, 0.5)",
            "lognormal(200ns, 1.5)",
        ] {
            let d = Dist::parse(text).unwrap();
            let Dist::LogNormal { median, sigma } = d else {
                unreachable!()
            };
            let s = Sampler::new(&d);
            let mut r = rng::rng(5, 0);
            let n = 400_000;
            let mut xs: Vec<u64> = (0..n).map(|_| s.sample(&mut r)).collect();
            let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
            let want = d.mean();
            assert!(
                (mean - want).abs() / want < 0.02,
                "{text}: sampled mean {mean}, expected {want}"
            );
            xs.sort_unstable();
            for p in [0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999] {
                let got = xs[(p * n as f64) as usize] as f64;
                let want = lognormal_quantile(median, sigma, p);
                assert!(
                    (got - want).abs() / want < 0.03 + 1.0 / want,
                    "{text}: quantile {p} sampled {got}, expected {want}"
                );
            }
            // Same draws, same samples.
            let (mut a, mut b) = (rng::rng(9, 2), rng::rng(9, 2));
            for _ in 0..1000 {
                assert_eq!(s.sample(&mut a), s.sample(&mut b));
            }
        }
    }

    #[test]
    fn table_interpolation_stays_close_to_the_quantile_function() {
        let (median, sigma) = (150, 0.6);
        let Sampler::Table { table, shift, .. } = Sampler::new(&Dist::LogNormal { median, sigma })
        else {
            panic!("a lognormal is tabulated");
        };
        for k in 1..TABLE - 1 {
            for f in [0.25, 0.5, 0.75] {
                let p = (k as f64 + f) / TABLE as f64;
                let scale = (1u64 << shift) as f64;
                let (a, b) = (table[k] as f64 / scale, table[k + 1] as f64 / scale);
                let lerp = a + (b - a) * f;
                let exact = lognormal_quantile(median, sigma, p);
                assert!(
                    (lerp - exact).abs() / exact < 0.02,
                    "p {p}: {lerp} vs {exact}"
                );
            }
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
        assert!(
            Dist::parse("hist(2us-5us=3)")
                .unwrap_err()
                .contains("LOW..HIGH=COUNT")
        );
        assert!(
            Dist::parse("hist(5us..2us=3)")
                .unwrap_err()
                .contains("0 < LOW <= HIGH")
        );
        assert!(
            Dist::parse("hist(2us..5us=0)")
                .unwrap_err()
                .contains("every bucket is empty")
        );
    }

    #[test]
    fn a_histogram_draws_each_bucket_as_often_as_its_count_and_stays_inside_it() {
        let d = Dist::parse("hist(2us..5us=1, 20us..50us=3)").unwrap();
        let mut r = rng::rng(5, 0);
        let n = 40_000;
        let mut low = 0;
        for _ in 0..n {
            let x = d.sample(&mut r);
            match x {
                2_000..=5_000 => low += 1,
                20_000..=50_000 => {}
                _ => panic!("{x} is in no bucket"),
            }
        }
        let share = f64::from(low) / f64::from(n);
        assert!((share - 0.25).abs() < 0.01, "{share}");
    }
}
