//! Container output to CRI log files: each line is
//! `<RFC3339Nano> <stream> <P|F> <content>`, F for a full line, P for a
//! fragment of a line longer than [`MAX_LINE`] (as containerd writes them).
//! The kubelet reads these files back for `kubectl logs`.

use std::io::Write;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

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

/// Copy `pipe` into the shared log file until EOF, and to attached clients.
pub async fn pump(pipe: impl AsyncRead + Unpin, stream: &'static str, file: std::sync::Arc<parking_lot::Mutex<std::fs::File>>, attached: Output) {
    let mut r = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let rec = records(crate::timefmt::now_nanos(), stream, &buf);
                let _ = file.lock().write_all(&rec);
                let _ = attached.send((stream == "stderr", bytes::Bytes::copy_from_slice(&buf)));
            }
        }
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
}
