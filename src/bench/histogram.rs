//! A latency histogram with log-linear buckets: constant memory however many sessions run,
//! percentiles within about 3% of the exact value.

use std::time::Duration;

/// Each power of two is split into this many buckets (5 bits of mantissa: under 3.2% error).
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;
/// Enough buckets for anything up to 2^64 microseconds.
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// Counts of durations, in microseconds.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

/// The bucket of `v`: exact below 32, else the top 5 bits after the leading one.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let mantissa = (v >> shift) & (SUB - 1);
    (SUB * u64::from(shift + 1) + mantissa) as usize
}

/// The largest value that falls in bucket `b`.
fn upper(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    let mantissa = b % SUB;
    // The last bucket ends at u64::MAX itself.
    u64::try_from((u128::from(SUB + mantissa + 1) << shift) - 1).unwrap_or(u64::MAX)
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The smallest bucket bound at or above which `q` (0..=1) of the values lie; `None` when
    /// empty. Reported as the bucket's upper bound, so a percentile is never understated.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(upper(b).min(self.max)));
            }
        }
        Some(Duration::from_micros(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut previous = 0;
        for b in 1..BUCKETS {
            assert!(upper(b) > upper(previous), "bucket {b}");
            assert_eq!(bucket(upper(b)), b);
            assert_eq!(bucket(upper(previous) + 1), b);
            previous = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for us in [1, 2, 3, 4] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(2)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(4)));
        assert_eq!(h.total, 4);
    }

    proptest! {
        #[test]
        fn percentiles_are_within_3_percent_above_the_exact_value(
            mut values in proptest::collection::vec(1u64..100_000_000, 1..500),
            q in 0.0f64..=1.0,
        ) {
            let (mut a, mut b) = (Histogram::default(), Histogram::default());
            for (i, v) in values.iter().enumerate() {
                let h = if i % 2 == 0 { &mut a } else { &mut b };
                h.record(Duration::from_micros(*v));
            }
            a.merge(&b);
            values.sort_unstable();
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let exact = values[rank - 1];
            let got = a.quantile(q).unwrap().as_micros() as u64;
            prop_assert!(got >= exact, "{got} < {exact}");
            prop_assert!(got as f64 <= exact as f64 * 1.032, "{got} vs {exact}");
        }
    }
}
