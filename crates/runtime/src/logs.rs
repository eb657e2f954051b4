//! Container output to CRI log files: each line is
//! `<RFC3339Nano> <stream> <P|F> <content>`, F for a full line, P for a
//! fragment of a line longer than [`MAX_LINE`] (as containerd writes them).
//! The kubelet reads these files back for `kubectl logs`.

use std::io::Write;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A container's live output for `attach`: (is stderr, bytes).
pub type Output = tokio::sync::broadcast::Sender<(bool, bytes::Bytes)>;

/// Longest fragment written as one record.
pub const MAX_LINE: usize = 16 * 1024;

/// One log record, `content` without its newline.
pub fn record(nanos: i64, stream: &str, full: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(crate::timefmt::rfc3339_nanos(nanos).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Split one read (up to and including a newline, or EOF) into records.
pub fn records(nanos: i64, stream: &str, chunk: &[u8]) -> Vec<u8> {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut out = Vec::new();
    let mut parts = body.chunks(MAX_LINE).peekable();
    if body.is_empty() {
        return record(nanos, stream, true, b"");
    }
    while let Some(p) = parts.next() {
        out.extend(record(nanos, stream, parts.peek().is_none(), p));
    }
    out
}

/// Records for the complete lines at the front of `pending` (and P
/// fragments of a line grown past [`MAX_LINE`]), removed from it; what is
/// left is the start of a line still being written.
pub fn take_records(nanos: i64, stream: &str, pending: &mut Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match pending.iter().position(|b| *b == b'\n') {
            Some(i) if i <= MAX_LINE => {
                out.extend(record(nanos, stream, true, &pending[..i]));
                pending.drain(..=i);
            }
            _ if pending.len() > MAX_LINE => {
                out.extend(record(nanos, stream, false, &pending[..MAX_LINE]));
                pending.drain(..MAX_LINE);
            }
            _ => return out,
        }
    }
}

/// Copy `pipe` into the shared log file until EOF, and to attached clients.
/// Attached clients get each read as it comes, not line by line: a
/// terminal's prompt has no newline after it.
pub async fn pump(mut pipe: impl AsyncRead + Unpin, stream: &'static str, file: std::sync::Arc<parking_lot::Mutex<std::fs::File>>, attached: Output) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = attached.send((stream == "stderr", bytes::Bytes::copy_from_slice(&buf[..n])));
        pending.extend_from_slice(&buf[..n]);
        let rec = take_records(crate::timefmt::now_nanos(), stream, &mut pending);
        if !rec.is_empty() {
            let _ = file.lock().write_all(&rec);
        }
    }
    if !pending.is_empty() {
        let _ = file.lock().write_all(&records(crate::timefmt::now_nanos(), stream, &pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn full_and_partial_lines() {
        assert_eq!(records(0, "stdout", b"hello\n"), b"1970-01-01T00:00:00.000000000Z stdout F hello\n");
        assert_eq!(records(0, "stderr", b"\n"), b"1970-01-01T00:00:00.000000000Z stderr F \n");
        let long = vec![b'x'; MAX_LINE + 3];
        let out = String::from_utf8(records(0, "stdout", &long)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("1970-01-01T00:00:00.000000000Z stdout P xxx"));
        assert_eq!(lines[1], "1970-01-01T00:00:00.000000000Z stdout F xxx");
    }
    #[test]
    fn lines_across_reads() {
        let mut pending = b"/ # ".to_vec();
        assert!(take_records(0, "stdout", &mut pending).is_empty(), "a prompt is not a line yet");
        pending.extend_from_slice(b"echo hi\r\nhi\r\n/ # ");
        let out = String::from_utf8(take_records(0, "stdout", &mut pending)).unwrap();
        assert_eq!(out, "1970-01-01T00:00:00.000000000Z stdout F / # echo hi\r\n1970-01-01T00:00:00.000000000Z stdout F hi\r\n");
        assert_eq!(pending, b"/ # ");
        let mut long = vec![b'y'; MAX_LINE + 1];
        let out = String::from_utf8(take_records(0, "stdout", &mut long)).unwrap();
        assert!(out.starts_with("1970-01-01T00:00:00.000000000Z stdout P yyy"), "{}", &out[..60]);
        assert_eq!(long, b"y");
    }
}
