//! The byte scans every record goes through: where a JSON string needs
//! care, and whether a line is UTF-8; the string writer built on them;
//! trimming without a loop; and numbers and addresses as text without
//! `core::fmt`.
//!
//! Written once for the three builds. Finding a string's end looks at eight
//! bytes at a time in a `u64` (SWAR) natively and in the Fluent Bit module
//! (whose runtime has no SIMD), and at sixteen in a vector in the component,
//! which wasmtime runs with WebAssembly SIMD. The UTF-8 check is core's
//! natively; in the guest, where core's word-at-a-time checks work on 32-bit
//! words, an ASCII check the same way as the string scan comes first.

/// Where the first byte a JSON string cannot hold as it is (`"`, `\\` or a
/// control character) is: its index, or `bytes.len()` when there is none.
/// One number, not an `Option`: the guest returned an `Option` through
/// linear memory, a store and a load on each side of every call.
pub(crate) fn first_special(bytes: &[u8]) -> usize {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return simd::first_special(bytes);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    first_special_swar(bytes).unwrap_or(bytes.len())
}

/// `bytes` as text, or why not: [`std::str::from_utf8`], with a faster
/// answer in the guest for the usual line, which is all ASCII (natively
/// `from_utf8`'s own ASCII path is the faster).
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    #[cfg(target_arch = "wasm32")]
    if is_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
}

/// A JSON string literal. Most strings need no escaping: copy them whole.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let i = start + first_special(&bytes[start..]);
        if i == bytes.len() {
            break;
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `s` without the whitespace around it, as [`str::trim`] gives it, but
/// with no loop entered when there is none (values rarely have any, and the
/// guest checks for interruption at the head of every loop it enters).
#[inline]
pub(crate) fn trimmed(s: &str) -> &str {
    // A byte of 0x21..=0x7E is an ASCII character that is not whitespace;
    // anything else (a control, a multi-byte character) may be.
    let plain = |b: &u8| (0x21..0x7F).contains(b);
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => s,
        _ => s.trim(),
    }
}

/// A number in decimal, written without `core::fmt`: findings build their
/// summaries and incident keys from addresses and ports, and `format!` cost
/// about two thousand instructions a call in the guest.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut v: u64) -> Decimal {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: ASCII digits only.
        unsafe { std::str::from_utf8_unchecked(&self.digits[self.start..]) }
    }
}

/// Appends `ip` as its `Display` writes it (IPv4 by hand, IPv6 through
/// `core::fmt`, whose compression rules are not worth repeating).
pub(crate) fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(Decimal::new(u64::from(octet)).as_str());
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip` as text: [`push_ip`] into a new string.
pub(crate) fn ip_text(ip: std::net::IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// A word of at most 16 bytes (a stream, a verdict), padded at compile time
/// and written as all sixteen bytes with the padding cut off again: in the
/// guest a copy whose length is known only when it runs is a call out of the
/// compiled code into the runtime, one of a known sixteen bytes two stores.
pub(crate) struct Word {
    padded: [u8; 16],
    len: usize,
}

impl Word {
    pub(crate) const fn new(text: &str) -> Word {
        let bytes = text.as_bytes();
        assert!(bytes.len() <= 16, "a Word is at most 16 bytes");
        let mut padded = [0u8; 16];
        let mut i = 0;
        while i < bytes.len() {
            padded[i] = bytes[i];
            i += 1;
        }
        Word {
            padded,
            len: bytes.len(),
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.padded);
        out.truncate(out.len() - (16 - self.len));
    }
}

/// Each of `texts` as a [`Word`], in order.
pub(crate) const fn words<const N: usize>(texts: [&str; N]) -> [Word; N] {
    let mut words = [const { Word::new("") }; N];
    let mut i = 0;
    while i < N {
        words[i] = Word::new(texts[i]);
        i += 1;
    }
    words
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// [`first_special`] eight bytes at a time.
fn first_special_swar(bytes: &[u8]) -> Option<usize> {
    // High bit set in each byte of `v` that is zero (exact for the lowest
    // such byte, which is the one returned; carries only mark bytes above it).
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        let special = zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            // Bytes below 0x20: subtracting 0x20 borrows into the high bit.
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGHS);
        if special != 0 {
            return Some(at + special.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(target_arch = "wasm32")]
fn is_ascii(bytes: &[u8]) -> bool {
    #[cfg(target_feature = "simd128")]
    {
        let blocks = bytes.len() / 16 * 16;
        simd::is_ascii_blocks(&bytes[..blocks]) && is_ascii_swar(&bytes[blocks..])
    }
    #[cfg(not(target_feature = "simd128"))]
    {
        is_ascii_swar(bytes)
    }
}

/// Whether every byte is below 0x80, eight at a time.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn is_ascii_swar(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut seen = 0u64;
    for chunk in &mut chunks {
        seen |= u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
    }
    seen & HIGHS == 0 && chunks.remainder().iter().all(u8::is_ascii)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// The sixteen bytes at `at`.
    fn load(bytes: &[u8], at: usize) -> v128 {
        let block: &[u8; 16] = bytes[at..at + 16].try_into().expect("a block of 16");
        // SAFETY: 16 readable bytes; a v128 load may be unaligned.
        unsafe { core::ptr::read_unaligned(block.as_ptr().cast::<v128>()) }
    }

    /// The bytes among these sixteen a JSON string cannot hold as they are, as bits.
    fn special_bits(v: v128) -> u32 {
        let special = v128_or(
            v128_or(
                u8x16_eq(v, u8x16_splat(b'"')),
                u8x16_eq(v, u8x16_splat(b'\\')),
            ),
            u8x16_lt(v, u8x16_splat(0x20)),
        );
        u32::from(u8x16_bitmask(special))
    }

    /// [`super::first_special`]: whole blocks, then the last sixteen bytes
    /// (overlapping the blocks, whose bytes are known plain) instead of a
    /// byte loop. Most calls end in the first block, where a key's or a short
    /// value's closing quote is.
    pub(super) fn first_special(bytes: &[u8]) -> usize {
        let len = bytes.len();
        if len < 16 {
            return shorter_than_a_block(bytes);
        }
        let mut at = 0;
        while at + 16 <= len {
            let bits = special_bits(load(bytes, at));
            if bits != 0 {
                return at + bits.trailing_zeros() as usize;
            }
            at += 16;
        }
        if at == len {
            return len;
        }
        // The last block starts `overlap` bytes before `at`: those were checked.
        let overlap = at + 16 - len;
        let bits = special_bits(load(bytes, len - 16)) >> overlap;
        if bits != 0 {
            return at + bits.trailing_zeros() as usize;
        }
        len
    }

    /// Out of line: Cranelift saves every register a function uses on entry,
    /// and the eight-byte scan's constants would make the vector scan, which
    /// most calls end in, save five.
    #[inline(never)]
    fn shorter_than_a_block(bytes: &[u8]) -> usize {
        super::first_special_swar(bytes).unwrap_or(bytes.len())
    }

    /// `bytes.len()` is a multiple of 16.
    pub(super) fn is_ascii_blocks(bytes: &[u8]) -> bool {
        let mut seen = u8x16_splat(0);
        let mut at = 0;
        while at < bytes.len() {
            seen = v128_or(seen, load(bytes, at));
            at += 16;
        }
        u8x16_bitmask(seen) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_is_str_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\tx\n",
            "10.0.0.1",
            " 10.0.0.1\r\n",
            "a b",
            "\u{a0}x",
            "x\u{3000}",
            "\u{1f}x\u{7f}",
            "é",
            "\u{b}1\u{c}",
        ] {
            assert_eq!(trimmed(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_addresses_read_as_display_writes_them() {
        for v in [
            0,
            7,
            10,
            99,
            255,
            443,
            65_535,
            1_795_532_021_996_817_087,
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(v).as_str(), v.to_string());
        }
        for ip in [
            "0.0.0.0",
            "10.20.0.2",
            "93.184.216.34",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
            "fe80::1:2:3:4",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// Random bytes of every length up to 70 (past several vector blocks):
    /// mostly plain text, sometimes a special byte or one next to one.
    fn samples() -> impl Iterator<Item = Vec<u8>> {
        let mut x: u32 = 12345;
        (0..70).flat_map(move |len| {
            (0..200)
                .map(|_| {
                    (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 17;
                            x ^= x << 5;
                            match x % 23 {
                                0 => b'"',
                                1 => b'\\',
                                2 => (x >> 8) as u8 % 0x20,
                                3 => 0x21 + (x >> 8) as u8 % 4,
                                4 => 0x80 + (x >> 8) as u8 % 0x80,
                                _ => b'a' + (x >> 8) as u8 % 26,
                            }
                        })
                        .collect::<Vec<u8>>()
                })
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn finds_the_first_quote_backslash_or_control_byte_at_any_offset() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for bytes in samples() {
            assert_eq!(
                first_special(&bytes),
                naive(&bytes).unwrap_or(bytes.len()),
                "{bytes:?}"
            );
            assert_eq!(first_special_swar(&bytes), naive(&bytes), "{bytes:?}");
        }
    }

    #[test]
    fn a_word_is_written_as_its_text() {
        let mut out = b"x".to_vec();
        for text in ["", "a", "verdict", "sixteen-bytes-16"] {
            Word::new(text).write(&mut out);
            out.push(b'|');
        }
        assert_eq!(out, b"x|a|verdict|sixteen-bytes-16|");
    }

    #[test]
    fn reads_utf8_as_std_does() {
        let mut checked = 0;
        for mut bytes in samples() {
            // Whole characters too, not only stray high bytes.
            if bytes.len() % 3 == 0 {
                bytes.extend_from_slice("é€😀".as_bytes());
            }
            assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes), "{bytes:?}");
            assert_eq!(is_ascii_swar(&bytes), bytes.is_ascii(), "{bytes:?}");
            checked += usize::from(std::str::from_utf8(&bytes).is_ok());
        }
        assert!(checked > 1000, "only {checked} valid samples");
    }
}
