//! The Protocol Buffers wire format: the primitives every hand-written encoder of the crate
//! shares (OTLP spans and metrics, the Prometheus protobuf exposition). Encoders write
//! straight into one reused buffer; no generated types, no `prost` in the service's build.

/// Wire type of varints (`int64`, `uint64`, `sint64` zig-zagged, `bool`, enums).
pub(crate) const VARINT: u8 = 0;
/// Wire type of 8-byte little-endian values (`fixed64`, `double`).
pub(crate) const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (strings, bytes, messages, packed lists).
pub(crate) const LEN: u8 = 2;
/// Wire type of 4-byte little-endian values (`fixed32`, `float`).
// Only the OTLP encoders use it.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) const FIXED32: u8 = 5;

/// The one-byte tag of `field` (1 to 15).
#[inline(always)]
pub(crate) const fn tag(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

// Only the OTLP encoders use it.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[inline(always)]
pub(crate) fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

#[inline(always)]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field's size: tag, length, body.
// Only the OTLP encoders use it.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[inline(always)]
pub(crate) fn field_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// The tag and length of a length-delimited field whose `body` bytes come next.
#[inline(always)]
pub(crate) fn put_len(out: &mut Vec<u8>, field: u8, body: usize) {
    out.push(tag(field, LEN));
    put_varint(out, body as u64);
}

#[inline(always)]
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_len(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// A `uint64`/`int64`/enum field (negative `int64`s take ten bytes, as protobuf says).
#[inline(always)]
pub(crate) fn put_uint(out: &mut Vec<u8>, field: u8, n: u64) {
    out.push(tag(field, VARINT));
    put_varint(out, n);
}

/// A `sint32`/`sint64` field: zig-zag encoded, so small negatives stay short.
#[inline(always)]
pub(crate) fn put_sint(out: &mut Vec<u8>, field: u8, n: i64) {
    put_uint(out, field, zigzag(n));
}

#[inline(always)]
pub(crate) const fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// A `double` field.
#[inline(always)]
pub(crate) fn put_double(out: &mut Vec<u8>, field: u8, v: f64) {
    out.push(tag(field, FIXED64));
    out.extend_from_slice(&v.to_le_bytes());
}

/// A `fixed64` field.
// Only the OTLP encoders use it.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[inline(always)]
pub(crate) fn put_fixed64(out: &mut Vec<u8>, field: u8, v: u64) {
    out.push(tag(field, FIXED64));
    out.extend_from_slice(&v.to_le_bytes());
}

/// A message (or packed list) whose length is not known before its body is written: the
/// length goes in `reserve` bytes left before the body, moved once if it needs more.
pub(crate) struct Open {
    at: usize,
    reserve: usize,
}

/// Starts length-delimited field `field` (0: no tag, as the length prefixes of a delimited
/// stream), leaving `reserve` bytes for the length (2 holds up to 16 KiB without a move).
#[inline]
pub(crate) fn open(out: &mut Vec<u8>, field: u8, reserve: usize) -> Open {
    if field != 0 {
        out.push(tag(field, LEN));
    }
    let at = out.len();
    out.resize(at + reserve, 0);
    Open { at, reserve }
}

/// Ends the field `open` started: writes its length, moving the body if the length does
/// not fill the bytes reserved.
#[inline]
pub(crate) fn close(out: &mut Vec<u8>, open: Open) {
    let Open { at, reserve } = open;
    let body = out.len() - at - reserve;
    let mut len = [0u8; 10];
    let mut x = body as u64;
    let mut n = 0;
    while x >= 0x80 {
        len[n] = (x as u8) | 0x80;
        x >>= 7;
        n += 1;
    }
    len[n] = x as u8;
    n += 1;
    if n == reserve {
        out[at..at + n].copy_from_slice(&len[..n]);
    } else {
        out.splice(at..at + reserve, len[..n].iter().copied());
    }
}

/// Reads a varint off the front of `buf`; `None` if it is cut short or longer than 64 bits.
// Only the OTLP readers use it (a collector's answer, the split of a metrics export).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub(crate) fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_fit_whatever_was_reserved() {
        for (reserve, body) in [(1, 5), (1, 300), (2, 5), (2, 300), (3, 70_000), (1, 0)] {
            let mut out = vec![9u8];
            let o = open(&mut out, 4, reserve);
            out.extend(std::iter::repeat_n(7u8, body));
            close(&mut out, o);
            let mut expected = vec![9u8, tag(4, LEN)];
            put_varint(&mut expected, body as u64);
            expected.extend(std::iter::repeat_n(7u8, body));
            assert_eq!(out, expected, "reserve {reserve}, body {body}");
        }
    }

    #[test]
    fn zigzag_keeps_small_negatives_short() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
