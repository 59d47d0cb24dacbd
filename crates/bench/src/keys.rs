//! Which key each request uses.

/// Produces keys of a fixed size from a key space, in order or at random.
/// Randomness is a per-client xorshift generator: cheap, and a run's key
/// sequence depends only on the client number.
pub(crate) struct KeyGen {
    size: usize,
    space: u64,
    sequential: bool,
    state: u64,
}

impl KeyGen {
    pub(crate) fn new(size: usize, space: u64, sequential: bool, client: usize) -> KeyGen {
        KeyGen {
            size,
            space,
            sequential,
            state: 0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
        }
    }

    /// A number in `[0, 1)`, for choosing between operations.
    pub(crate) fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The key for request number `seq`.
    pub(crate) fn key(&mut self, seq: u64) -> Vec<u8> {
        let n = if self.sequential {
            seq % self.space
        } else {
            self.next() % self.space
        };
        key_bytes(n, self.size)
    }
}

/// Key `n` as `size` bytes: zero-padded decimal, cut to the last `size`
/// digits if it does not fit.
pub(crate) fn key_bytes(n: u64, size: usize) -> Vec<u8> {
    let digits = format!("{n:0size$}");
    digits.as_bytes()[digits.len() - size..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_requested_size() {
        assert_eq!(key_bytes(42, 8), b"00000042".to_vec());
        assert_eq!(key_bytes(123_456, 3), b"456".to_vec());
        let mut keys = KeyGen::new(8, 10, true, 0);
        assert_eq!(keys.key(13), b"00000003".to_vec());
    }

    #[test]
    fn random_keys_stay_in_the_key_space() {
        let mut keys = KeyGen::new(4, 5, false, 3);
        for seq in 0..100 {
            let k: u64 = String::from_utf8(keys.key(seq)).unwrap().parse().unwrap();
            assert!(k < 5);
        }
        let f = keys.fraction();
        assert!((0.0..1.0).contains(&f));
    }
}
