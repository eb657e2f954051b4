//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! tests that scrape our endpoints: every line must be a HELP, a TYPE or a
//! sample of the family whose TYPE came last, or parsing fails. OpenMetrics'
//! `# UNIT` lines and final `# EOF` (what `prometheus-client` writes) pass.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Scrape {
    pub help: BTreeMap<String, String>,
    pub kind: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The samples of `name` whose labels include every pair of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))).collect()
    }

    /// The one sample of `name` with those labels; panics on none or several.
    pub fn one(&self, name: &str, want: &[(&str, &str)]) -> &Sample {
        let found = self.find(name, want);
        assert_eq!(found.len(), 1, "want one {name} {want:?}, got {found:?}");
        found[0]
    }
}

fn metric_name(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(s.len());
    let name = &s[..end];
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some((name, &s[end..]))
}

/// `{k="v",…}` at the start of `s`: the labels and what follows.
fn labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    let Some(rest) = s.strip_prefix('{') else { return Ok((out, s)) };
    s = rest;
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let (k, rest) = metric_name(s).ok_or_else(|| format!("bad label name at {s:?}"))?;
        let mut chars = rest.strip_prefix("=\"").ok_or_else(|| format!("want =\" after {k}"))?.char_indices();
        let mut v = String::new();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => v.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => v.push(c),
                    other => return Err(format!("bad escape {other:?} in {k}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => v.push(c),
                None => return Err(format!("unterminated value of {k}")),
            }
        };
        if out.insert(k.to_string(), v).is_some() {
            return Err(format!("label {k} twice"));
        }
        s = &rest[2 + end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

pub fn parse(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().copied().enumerate() {
        if line == "# EOF" && i + 1 == lines.len() || line.starts_with("# UNIT ") {
            continue;
        }
        let err = |e: String| format!("{e} in line {line:?}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| err("HELP without text".into()))?;
            scrape.help.insert(name.to_string(), help.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE without kind".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type {kind}")));
            }
            if scrape.kind.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(err(format!("second TYPE for {name}")));
            }
            current = Some(name.to_string());
        } else if line.starts_with('#') || line.is_empty() {
            return Err(err("neither HELP, TYPE nor a sample".into()));
        } else {
            let (name, rest) = metric_name(line).ok_or_else(|| err("bad metric name".into()))?;
            let family = current.as_deref().ok_or_else(|| err("sample before any TYPE".into()))?;
            let suffixed = ["_bucket", "_sum", "_count", "_total", "_created"].iter().any(|s| name.strip_suffix(s) == Some(family));
            if name != family && !suffixed {
                return Err(err(format!("sample of {name} under TYPE {family}")));
            }
            let (labels, rest) = labels(rest).map_err(err)?;
            let mut fields = rest.strip_prefix(' ').ok_or_else(|| err("want a space before the value".into()))?.split(' ');
            let value = value(fields.next().unwrap_or("")).map_err(err)?;
            let timestamp = fields.next().map(|t| t.parse::<i64>().map_err(|_| err(format!("bad timestamp {t:?}")))).transpose()?;
            if fields.next().is_some() {
                return Err(err("trailing fields".into()));
            }
            scrape.samples.push(Sample { name: name.to_string(), labels, value, timestamp });
        }
    }
    Ok(scrape)
}
