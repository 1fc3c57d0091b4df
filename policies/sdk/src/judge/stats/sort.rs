//! Sorting doubles by `f64::total_cmp`, which the judge does twice per
//! metric on up to 10 080 values a cohort. A comparison sort's branches
//! are a coin toss on measured data; a radix sort on the values' bits has
//! none, and gives the same order: under `total_cmp` equal values are the
//! same bits, so every correct sort gives the one answer.

/// Short cohorts keep the comparison sort: the radix sort's fixed work
/// (eight 256-entry histograms, a pass per byte) does not shrink with them.
const RADIX_FROM: usize = 256;

/// Sorts `values` ascending by [`f64::total_cmp`].
pub(crate) fn sort_total(values: &mut [f64]) {
    if values.len() < RADIX_FROM || u32::try_from(values.len()).is_err() {
        values.sort_unstable_by(f64::total_cmp);
    } else {
        radix_sort(values);
    }
}

/// Least significant byte first, one pass per byte of the key; a byte
/// that every value shares (the sign and exponent of values of one
/// magnitude) is skipped.
fn radix_sort(values: &mut [f64]) {
    let n = values.len();
    let mut keys: Vec<u64> = values.iter().map(|&v| order_key(v)).collect();
    let mut histograms = [[0u32; 256]; 8];
    for &key in &keys {
        for (byte, histogram) in histograms.iter_mut().enumerate() {
            histogram[digit(key, byte)] += 1;
        }
    }
    let mut scratch = vec![0u64; n];
    for (byte, histogram) in histograms.iter().enumerate() {
        if histogram.iter().any(|&count| count as usize == n) {
            continue;
        }
        let mut next = [0usize; 256];
        let mut start = 0;
        for (next, &count) in next.iter_mut().zip(histogram) {
            *next = start;
            start += count as usize;
        }
        for &key in &keys {
            let slot = &mut next[digit(key, byte)];
            scratch[*slot] = key;
            *slot += 1;
        }
        std::mem::swap(&mut keys, &mut scratch);
    }
    for (value, key) in values.iter_mut().zip(keys) {
        *value = from_order_key(key);
    }
}

fn digit(key: u64, byte: usize) -> usize {
    ((key >> (8 * byte)) & 0xff) as usize
}

const SIGN: u64 = 1 << 63;

/// A key whose unsigned order is `total_cmp`'s: negative values (sign set)
/// have every bit flipped, so larger magnitudes come first and below all
/// positive ones, which get the sign bit set.
fn order_key(value: f64) -> u64 {
    let bits = value.to_bits();
    if bits & SIGN != 0 { !bits } else { bits | SIGN }
}

fn from_order_key(key: u64) -> f64 {
    f64::from_bits(if key & SIGN != 0 { key & !SIGN } else { !key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_radix_sort_orders_every_kind_of_double_as_total_cmp_does() {
        let mut state = 11u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let special = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE / 4.0,
            -f64::MIN_POSITIVE / 4.0,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
        ];
        for (round, len) in [0, 1, 2, 255, 256, 257, 1000, 1440, 4096]
            .into_iter()
            .enumerate()
        {
            let values: Vec<f64> = (0..len)
                // Odd rounds: measurements only, whose high bytes agree.
                .map(|i| if round % 2 == 1 { 3 } else { (round + i) % 5 })
                .map(|kind| match kind {
                    // Any bits at all: NaNs with payloads, subnormals.
                    0 => f64::from_bits(next()),
                    1 => special[(next() % special.len() as u64) as usize],
                    // Few distinct values: runs of equal ones.
                    2 => (next() % 7) as f64 - 3.0,
                    // One magnitude, as measurements: shared high bytes.
                    _ => 100.0 + (next() % 1_000_000) as f64 / 1e4,
                })
                .collect();
            let mut expected = values.clone();
            expected.sort_by(f64::total_cmp);
            let mut ours = values.clone();
            sort_total(&mut ours);
            let mut radix = values;
            radix_sort(&mut radix);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
            assert_eq!(bits(&ours), bits(&expected), "{len} values");
            assert_eq!(bits(&radix), bits(&expected), "{len} values, radix");
        }
    }
}
