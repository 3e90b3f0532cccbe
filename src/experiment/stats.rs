//! Interval estimates and paired tests for leak counts.

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score 95% interval for `k` successes in `n` trials. For `k = 0`
/// the low end is 0 and the high end is the one-sided-style upper bound
/// (about 3.84/n for large n, close to the rule of three). `n = 0` gives [0, 1].
pub fn wilson95(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let lo = if k == 0.0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    (lo, hi)
}

/// Exact two-sided McNemar test on the discordant pairs of a paired
/// experiment: `b` runs failed only in the first variant, `c` only in the
/// second. Under the null hypothesis each discordant pair goes either way
/// with probability 1/2, so the p-value is `min(1, 2 * P[X <= min(b, c)])`
/// for `X ~ Binomial(b + c, 1/2)`. No discordant pairs gives 1.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // Sum the binomial pmf in log space: C(n, i) / 2^n for i = 0..=k.
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let mut ln_choose = 0.0_f64;
    let mut terms = Vec::with_capacity(k as usize + 1);
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        terms.push(ln_choose - ln_half_n);
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_zero_of_hundred_upper_bound() {
        let (lo, hi) = wilson95(0, 100);
        assert_eq!(lo, 0.0);
        // z^2 / (n + z^2) = 3.8415 / 103.8415
        assert!(close(hi, 0.036_994, 1e-5), "{hi}");
    }

    #[test]
    fn wilson_known_values() {
        // 2 in 100,000, the leak rate seen in grpc-go's CI.
        let (lo, hi) = wilson95(2, 100_000);
        assert!(close(lo, 5.49e-6, 0.05e-6), "{lo}");
        assert!(close(hi, 7.29e-5, 0.05e-5), "{hi}");
        // 50/100: 0.5 +- 0.0962 (textbook value [0.4038, 0.5962]).
        let (lo, hi) = wilson95(50, 100);
        assert!(
            close(lo, 0.4038, 1e-4) && close(hi, 0.5962, 1e-4),
            "{lo} {hi}"
        );
        // 10/10: upper bound 1, lower 0.7225.
        let (lo, hi) = wilson95(10, 10);
        assert!(close(lo, 0.7225, 1e-4) && hi == 1.0, "{lo} {hi}");
        assert_eq!(wilson95(0, 0), (0.0, 1.0));
    }

    #[test]
    fn wilson_contains_the_point_estimate() {
        for (k, n) in [(1, 3), (7, 1000), (999, 1000), (3, 1_000_000)] {
            let (lo, hi) = wilson95(k, n);
            let p = k as f64 / n as f64;
            assert!(lo < p && p < hi, "{k}/{n}: [{lo}, {hi}]");
        }
    }

    #[test]
    fn mcnemar_small_cases() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 5 vs 0: 2 * (1/32) = 0.0625
        assert!(close(mcnemar_exact(5, 0), 0.0625, 1e-12));
        assert!(close(mcnemar_exact(0, 5), 0.0625, 1e-12));
        // 6 vs 0: 2/64 = 0.03125
        assert!(close(mcnemar_exact(6, 0), 0.031_25, 1e-12));
        // 10 vs 2: 2 * (1 + 12 + 66) / 4096 = 0.038574...
        assert!(close(mcnemar_exact(10, 2), 158.0 / 4096.0, 1e-12));
        // Balanced: p = 1.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
    }

    #[test]
    fn mcnemar_large_counts_stay_finite() {
        let p = mcnemar_exact(1_000, 0);
        assert!(p > 0.0 && p < 1e-300, "{p}");
        assert!(mcnemar_exact(5_000, 0) >= 0.0);
        let p = mcnemar_exact(50_000, 50_000);
        assert_eq!(p, 1.0);
        let p = mcnemar_exact(520, 480);
        assert!(p > 0.2 && p < 0.25, "{p}");
    }
}
