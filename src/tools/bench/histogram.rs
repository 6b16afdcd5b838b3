//! The latency [`Histogram`]: log-linear buckets (exact below 128, then 128 per power of
//! two), mergeable, and the bucket arithmetic behind it (`bucket`, `bucket_low`,
//! `bucket_high`).

/// Bits of linear sub-buckets per power of two: 128 sub-buckets, under 0.8 % relative error.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `SUB` are exact; then 128 buckets for each power of two up to 2^63.
pub(super) const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB as usize;

/// An HDR-style histogram of `u64` values (nanoseconds here): exact below 128, then 128 linear
/// buckets per power of two, so any value is known to within 1/128 (0.8 %). Fixed size (about
/// 58 KiB once something is recorded), O(1) record, mergeable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[bucket(v)] += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += u128::from(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value recorded, exactly (0 when empty).
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The largest value recorded, exactly (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The exact mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// The value at percentile `p` (0–100): the highest value of the bucket holding the
    /// ceil(p% × count)-th smallest value, clamped to [min, max]. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.count as f64).ceil() as u64;
        let rank = rank.clamp(1, self.count);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_high(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// The bucket of `v`.
pub(super) fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let shift = (63 - v.leading_zeros()) - SUB_BITS;
    ((u64::from(shift) + 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The smallest value in bucket `i`.
pub(super) fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    (SUB + i % SUB) << shift
}

/// The largest value in bucket `i`.
pub(super) fn bucket_high(i: usize) -> u64 {
    let i64_ = i as u64;
    if i64_ < SUB {
        return i64_;
    }
    let shift = i64_ / SUB - 1;
    bucket_low(i).saturating_add((1u64 << shift) - 1)
}
