//! Resource quantities as the quota controller needs them: exact parsing to
//! milli-units and upstream's canonical formatting.
//!
//! Why canonical: `kubectl describe quota` and `get -o json` show what the
//! controller writes, and upstream writes sums in canonical form ("1500m",
//! "2k", "3Gi"), keeping the format (binary or decimal SI) of the first
//! operand, so users see the same strings on Skiff.

/// Suffix family of a quantity (upstream's `Format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    DecimalSI,
    BinarySI,
}

/// A quantity in milli-units with the format it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qty {
    pub milli: i128,
    pub format: Format,
}

impl Qty {
    pub fn count(n: i128) -> Qty {
        Qty { milli: n * 1000, format: Format::DecimalSI }
    }

    pub fn zero() -> Qty {
        Qty::count(0)
    }

    /// Add `o`, keeping our format (as upstream's `Quantity.Add`).
    pub fn add(&mut self, o: Qty) {
        self.milli += o.milli;
    }
}

const BIN: [(&str, u32); 6] = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
const DEC: [(&str, i32); 8] = [("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15)];

/// Parse a quantity string ("100m", "1.5Gi", "2e3"); None if malformed.
/// Values finer than a milli-unit round up, as upstream's quota math does.
pub fn parse(s: &str) -> Option<Qty> {
    let s = s.trim();
    let (num, format, mult_num, mult_exp) = if let Some((n, p)) = BIN.iter().find_map(|(suf, p)| s.strip_suffix(suf).map(|n| (n, *p))) {
        (n, Format::BinarySI, 1i128 << p, 0)
    } else if let Some(n) = s.strip_suffix('E').filter(|n| !n.is_empty() && !n.contains(['e', 'E'])) {
        (n, Format::DecimalSI, 1, 18)
    } else if let Some((n, e)) = DEC.iter().find_map(|(suf, e)| s.strip_suffix(suf).map(|n| (n, *e))) {
        (n, Format::DecimalSI, 1, e)
    } else if let Some((n, e)) = s.split_once(['e', 'E']) {
        (n, Format::DecimalSI, 1, e.parse::<i32>().ok()?)
    } else {
        (s, Format::DecimalSI, 1, 0)
    };
    let (neg, digits) = match num.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || digits.len() > 30 {
        return None;
    }
    // mantissa * 10^exp10 * mult_num = value; milli = value * 1000.
    let mantissa: i128 = format!("{int}{frac}").parse().ok()?;
    let exp10 = mult_exp + 3 - frac.len() as i32;
    let scaled = mantissa.checked_mul(mult_num)?;
    let milli = if exp10 >= 0 {
        scaled.checked_mul(10i128.checked_pow(exp10 as u32)?)?
    } else {
        let d = 10i128.checked_pow((-exp10) as u32)?;
        (scaled + d - 1) / d
    };
    Some(Qty { milli: if neg { -milli } else { milli }, format })
}

/// Upstream's canonical string for a quantity.
pub fn format(q: Qty) -> String {
    let (neg, v) = (q.milli < 0, q.milli.unsigned_abs() as i128);
    let sign = if neg { "-" } else { "" };
    if q.format == Format::BinarySI && v % 1000 == 0 && v >= 1024 * 1000 {
        let mut bytes = v / 1000;
        let mut p = 0;
        while p < 6 && bytes % 1024 == 0 {
            bytes /= 1024;
            p += 1;
        }
        let suf = if p == 0 { "" } else { BIN[p - 1].0 };
        return format!("{sign}{bytes}{suf}");
    }
    if v == 0 {
        return "0".into();
    }
    let (mut m, mut e) = (v, -3i32);
    while m % 10 == 0 && e < 18 {
        m /= 10;
        e += 1;
    }
    let extra = e.rem_euclid(3);
    m *= 10i128.pow(extra as u32);
    e -= extra;
    let suf = match e {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{sign}{m}{suf}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        format(parse(s).unwrap())
    }

    #[test]
    fn parses() {
        assert_eq!(parse("100m").unwrap().milli, 100);
        assert_eq!(parse("1.5").unwrap().milli, 1500);
        assert_eq!(parse("2Gi").unwrap(), Qty { milli: 2 * (1 << 30) * 1000, format: Format::BinarySI });
        assert_eq!(parse("1e3").unwrap().milli, 1_000_000);
        assert_eq!(parse("1E").unwrap().milli, 1_000_000_000_000_000_000_000);
        assert_eq!(parse("1n").unwrap().milli, 1, "sub-milli rounds up");
        assert!(parse("abc").is_none());
        assert!(parse("").is_none());
        assert!(parse("1.2.3").is_none());
    }

    #[test]
    fn canonical_like_upstream() {
        assert_eq!(canon("1500m"), "1500m");
        assert_eq!(canon("1.5"), "1500m");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("129e6"), "129M");
    }

    #[test]
    fn sums_keep_first_format() {
        let mut a = parse("1Gi").unwrap();
        a.add(parse("512Mi").unwrap());
        assert_eq!(format(a), "1536Mi");
        let mut b = parse("250m").unwrap();
        b.add(parse("1250m").unwrap());
        assert_eq!(format(b), "1500m");
    }
}
