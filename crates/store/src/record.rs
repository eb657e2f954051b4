//! Record framing shared by the WAL and snapshot files.
//!
//! A record is `len: u32 LE | crc: u32 LE | payload`, where `crc` is CRC-32
//! over the length bytes and the payload. Covering the length means a
//! corrupted length is caught instead of sending the reader off into garbage.

use std::io;

pub const HEADER: usize = 8;
/// No single record is larger than this; a bigger length means corruption.
pub const MAX_RECORD: usize = 256 << 20;

pub fn crc(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len_bytes);
    h.update(payload);
    h.finalize()
}

/// Append one framed record to `buf`.
pub fn encode(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    buf.extend_from_slice(&len);
    buf.extend_from_slice(&crc(&len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What the reader found at one position of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole, intact record and the offset just past it.
    Record(&'a [u8], usize),
    /// The end of the data.
    End,
    /// A record cut short by the end of the file: a write that never finished.
    Torn,
    /// A record whose checksum does not match, or an impossible length.
    Bad,
}

/// Decode the frame at `pos` in `data`.
pub fn decode(data: &[u8], pos: usize) -> Frame<'_> {
    let rest = &data[pos..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < HEADER {
        return Frame::Torn;
    }
    let len_bytes: [u8; 4] = rest[0..4].try_into().unwrap();
    let len = u32::from_le_bytes(len_bytes) as usize;
    let want = u32::from_le_bytes(rest[4..8].try_into().unwrap());
    if len > MAX_RECORD {
        return Frame::Bad;
    }
    if rest.len() < HEADER + len {
        return Frame::Torn;
    }
    let payload = &rest[HEADER..HEADER + len];
    if crc(&len_bytes, payload) != want {
        return Frame::Bad;
    }
    Frame::Record(payload, pos + HEADER + len)
}

/// Whether any intact record starts anywhere in `data[from..]`. Used to tell a
/// torn tail (nothing valid after the damage) from corruption in the middle.
pub fn any_record_after(data: &[u8], from: usize) -> bool {
    // Only the written part can hold records: skip preallocated zeros at the end.
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let data = &data[..end];
    (from..data.len().saturating_sub(HEADER) + 1).any(|p| match decode(data, p) {
        // A zero-length record of zeros has crc 0 over 4 zero bytes ≠ 0, so
        // zero-filled space never parses as a record.
        Frame::Record(payload, _) => !payload.is_empty(),
        _ => false,
    })
}

pub fn corrupt(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, b"hello");
        encode(&mut buf, b"world!");
        let Frame::Record(a, p) = decode(&buf, 0) else { panic!() };
        assert_eq!(a, b"hello");
        let Frame::Record(b, end) = decode(&buf, p) else { panic!() };
        assert_eq!(b, b"world!");
        assert_eq!(decode(&buf, end), Frame::End);
        assert_eq!(decode(&buf[..end - 1], p), Frame::Torn);
        assert_eq!(decode(&buf[..p + 3], p), Frame::Torn);
        let mut flipped = buf.clone();
        flipped[HEADER + 1] ^= 1;
        assert_eq!(decode(&flipped, 0), Frame::Bad);
        assert!(any_record_after(&flipped, 1));
        let mut tail = buf.clone();
        tail[p + HEADER + 2] ^= 1;
        assert!(!any_record_after(&tail, p + 1));
        assert!(!any_record_after(&[0u8; 64], 0));
    }
}
