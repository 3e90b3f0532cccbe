//! Seeded randomness. ChaCha8 is used everywhere a value must replay: its
//! output is fixed by its specification, unlike `StdRng`/`SmallRng`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Stream of the strategy's own draws.
pub const STREAM_SCHEDULE: u64 = 0;
/// Stream of the model's data draws (durations, latencies).
pub const STREAM_DATA: u64 = 1;
/// Stream of the timed strategy's cost draws.
pub const STREAM_TIMING: u64 = 2;

pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Uniform integer in `0..n` (n > 0) by multiply-shift; the tiny bias (< n/2^64)
/// is irrelevant here and the method never loops, so the number of draws per
/// decision is fixed.
#[inline]
pub fn below(r: &mut impl Rng, n: usize) -> usize {
    debug_assert!(n > 0);
    ((u128::from(r.next_u64()) * n as u128) >> 64) as usize
}

/// Uniform float in [0, 1).
#[inline]
pub fn unit(r: &mut impl Rng) -> f64 {
    (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// SplitMix64: derives independent per-run seeds from a master seed, so that
/// run `i` gets the same seed in every variant and on every shard.
pub fn derive_seed(master: u64, index: u64) -> u64 {
    let mut z = master ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = rng(7, 0);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[below(&mut r, 5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 1_800 && c < 2_200), "{seen:?}");
    }

    #[test]
    fn derived_seeds_differ() {
        let a: Vec<u64> = (0..100).map(|i| derive_seed(1, i)).collect();
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(a.len(), b.len());
        assert_ne!(derive_seed(1, 0), derive_seed(2, 0));
    }
}
