//! `resource.Quantity` strings (`100m`, `1Gi`, `1.5`, `2e3`), parsed to
//! thousandths so equal amounts compare equal however they are written.

/// The value in thousandths of a unit, or None if it is not a quantity.
pub fn parse(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (mantissa, exp10): (&str, i32) = match suffix {
        "" => (num, 0),
        "n" => (num, -9),
        "u" => (num, -6),
        "m" => (num, -3),
        "k" => (num, 3),
        "M" => (num, 6),
        "G" => (num, 9),
        "T" => (num, 12),
        "P" => (num, 15),
        "E" => (num, 18),
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let pow = match suffix { "Ki" => 10, "Mi" => 20, "Gi" => 30, "Ti" => 40, "Pi" => 50, _ => 60 };
            return scaled(num, 0).map(|v| v.checked_mul(1i128 << pow)).flatten().map(|v| v / 1000);
        }
        e if e.starts_with(['e', 'E']) => (num, e[1..].parse().ok()?),
        _ => return None,
    };
    scaled(mantissa, exp10).map(|v| v / 1000)
}

/// `num × 10^exp10`, in millionths (then divided back to thousandths, so
/// binary suffixes keep precision before the shift).
fn scaled(num: &str, exp10: i32) -> Option<i128> {
    let (neg, digits) = match num.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    // v is num × 10^len(frac); we want num × 10^(exp10 + 6).
    let shift = exp10 + 6 - frac.len() as i32;
    if shift >= 0 {
        v = v.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        v /= 10i128.checked_pow((-shift) as u32)?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quantities() {
        assert_eq!(parse("1"), Some(1000));
        assert_eq!(parse("1000m"), parse("1"));
        assert_eq!(parse("100m"), Some(100));
        assert_eq!(parse("1Ki"), Some(1024 * 1000));
        assert_eq!(parse("1Gi"), parse("1073741824"));
        assert_eq!(parse("1.5"), Some(1500));
        assert_eq!(parse("2e3"), parse("2k"));
        assert_eq!(parse("1M"), Some(1_000_000_000));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Xi"), None);
        assert_eq!(parse(""), None);
    }
}
