//! Reading CRI log files back for `kubectl logs`: strip each record's
//! `<time> <stream> <P|F> ` prefix and join P fragments to their line.

/// The content of one record and whether it ends its line (F).
pub fn parse_line(line: &str) -> Option<(&str, bool)> {
    let mut it = line.splitn(4, ' ');
    let (_time, _stream, tag) = (it.next()?, it.next()?, it.next()?);
    let content = it.next().unwrap_or("");
    Some((content, tag != "P"))
}

/// Turn log-file text into what the user wrote, keeping the last `tail` lines.
pub fn render(text: &str, tail: Option<usize>) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let Some((content, full)) = parse_line(l) else { continue };
        cur.push_str(content);
        if full {
            lines.push(std::mem::take(&mut cur));
        }
    }
    let skip = tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
    lines[skip..].iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn renders_and_tails() {
        let t = "2024-01-01T00:00:00.000000000Z stdout F one\n2024-01-01T00:00:00.000000000Z stderr P tw\n2024-01-01T00:00:00.000000000Z stderr F o\n2024-01-01T00:00:00.000000000Z stdout F three four\n";
        assert_eq!(render(t, None), "one\ntwo\nthree four\n");
        assert_eq!(render(t, Some(1)), "three four\n");
        assert_eq!(render(t, Some(0)), "");
    }
}
