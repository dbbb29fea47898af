//! `memcmp` a word at a time, for clawwatch's WebAssembly builds.
//!
//! The guest's libc compares one byte per step, and the engine compares
//! names on every record (hash-map keys, profile names, domain suffixes): in
//! the component that was 6% of its instructions, and the Fluent Bit
//! module's interpreter pays each step ten times over. Linked into them,
//! this one is taken and the libc archive's is left out (libc's `bcmp` calls
//! it too).
//!
//! A crate of its own, marked `no_builtins`, so it stays out of the engine's
//! link-time optimisation: seen there, the definition would be inlined into
//! every comparison of a known short length, which the compiler otherwise
//! expands into a few word compares.

#![no_std]
#![no_builtins]

/// Negative, zero or positive as `a` sorts before, with or after `b` (of
/// the same length), byte by byte, as C's `memcmp` answers.
#[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
fn compare(a: &[u8], b: &[u8]) -> i32 {
    // A shared name compared with itself (an agent's id in its binding and
    // as its own key): the same bytes, with no loop entered.
    if a.as_ptr() == b.as_ptr() {
        return 0;
    }
    let n = a.len();
    if n < 8 {
        for (&x, &y) in a.iter().zip(b) {
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        return 0;
    }
    // Whole words, then the last eight bytes as one word overlapping the
    // ones already equal: no byte loop (in the guest every loop entered is
    // checked for interruption), and a name of 8 to 15 bytes is two word
    // compares.
    let mut i = 0;
    while i + 16 <= n {
        if let Some(order) = word_order(a, b, i) {
            return order;
        }
        i += 8;
    }
    word_order(a, b, i)
        .or_else(|| word_order(a, b, n - 8))
        .unwrap_or(0)
}

/// How the eight bytes at `i` of `a` and `b` order, if they differ.
#[inline(always)]
fn word_order(a: &[u8], b: &[u8], i: usize) -> Option<i32> {
    let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("eight bytes"));
    let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("eight bytes"));
    (x != y).then(|| {
        // Little-endian: the lowest differing byte is the first in memory.
        let shift = (x ^ y).trailing_zeros() / 8 * 8;
        i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8)
    })
}

/// # Safety
/// `a` and `b` point to `n` readable bytes each.
#[cfg(target_family = "wasm")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise.
    unsafe {
        compare(
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::compare;
    use std::vec::Vec;

    #[test]
    fn orders_as_slices_order() {
        let mut x: u32 = 99;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut differed = 0;
        for len in 0..40 {
            for _ in 0..300 {
                let a: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let mut b = a.clone();
                // Equal, or different in one byte anywhere, by any amount.
                if len > 0 && next() % 4 != 0 {
                    let at = next() as usize % len;
                    b[at] = next() as u8;
                }
                let expected = a.cmp(&b);
                assert_eq!(compare(&a, &b).cmp(&0), expected, "{a:?} {b:?}");
                differed += usize::from(expected.is_ne());
            }
        }
        assert!(differed > 5000, "only {differed} differing pairs");
    }
}
