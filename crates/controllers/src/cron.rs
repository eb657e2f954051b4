//! Cron schedules as CronJobs use them (the standard five fields, as
//! upstream's robfig/cron `ParseStandard`): `min hour dom month dow` with
//! `*`, `?`, lists, ranges, steps, month and weekday names, and the
//! `@yearly`/`@annually`/`@monthly`/`@weekly`/`@daily`/`@midnight`/`@hourly`
//! descriptors. When both day-of-month and day-of-week are restricted a day
//! matches if either does (classic cron). Times are evaluated in a time zone
//! (the CronJob's `timeZone`, default UTC), so `0 9 * * *` in
//! `Europe/Berlin` follows daylight saving.

use k8s_openapi::jiff::Timestamp;

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    dom: u64,
    months: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + base);
    }
    s.parse().map_err(|_| format!("failed to parse int from {s}"))
}

/// One field into a bitset of allowed values in [lo, hi].
fn field(expr: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = expr == "*" || expr == "?";
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}"))?)),
            None => (part, None),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, name_base)?, value(b, names, name_base)?)
        } else {
            let v = value(range, names, name_base)?;
            (v, if step.is_some() { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            let why = if a < lo {
                format!("beginning of range ({a}) below minimum ({lo})")
            } else if a > b {
                format!("beginning of range ({a}) beyond end of range ({b})")
            } else {
                format!("end of range ({b}) above maximum ({hi})")
            };
            return Err(format!("{why}: {part}"));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: {spec}", f.len()));
        }
        let (minutes, _) = field(f[0], 0, 59, &[], 0)?;
        let (hours, _) = field(f[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], 1, 31, &[], 0)?;
        let (months, _) = field(f[3], 1, 12, &MONTHS, 1)?;
        let (mut dow, dow_star) = field(f[4], 0, 7, &DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow |= 1; // 7 is Sunday too
        }
        Ok(Schedule { minutes, hours, dom, months, dow, dom_star, dow_star })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.dom & (1 << day) != 0;
        let w = self.dow & (1 << weekday) != 0;
        if self.dom_star || self.dow_star { d && w } else { d || w }
    }

    /// The first activation strictly after `after`, in time zone `tz`; None within 5 years.
    pub fn next(&self, after: Timestamp, tz: &k8s_openapi::jiff::tz::TimeZone) -> Option<Timestamp> {
        use k8s_openapi::jiff::civil::{date, DateTime};
        use k8s_openapi::jiff::ToSpan;
        let start = after.to_zoned(tz.clone());
        // Start at the next whole minute (civil time).
        let mut t: DateTime = start.datetime().with().second(0).subsec_nanosecond(0).build().ok()?;
        t = t.checked_add(1.minute()).ok()?;
        let limit = t.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
                t = date(y, m, 1).at(0, 0, 0, 0);
                continue;
            }
            let wd = t.weekday().to_sunday_zero_offset() as u32;
            if !self.day_matches(t.day() as u32, wd) {
                t = t.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.checked_add(1.hour()).ok()?.with().minute(0).build().ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A civil time skipped by a DST gap resolves forward, as robfig/cron does.
            let z = t.to_zoned(tz.clone()).ok()?;
            let ts = z.timestamp();
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// The time zone of a CronJob (`timeZone`, default UTC; the IANA database on this machine).
pub fn time_zone(name: Option<&str>) -> Result<k8s_openapi::jiff::tz::TimeZone, String> {
    match name {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => Ok(k8s_openapi::jiff::tz::TimeZone::UTC),
        Some(n) => k8s_openapi::jiff::tz::TimeZone::get(n).map_err(|e| format!("unknown time zone {n}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::tz::TimeZone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec).unwrap().next(ts(after), &TimeZone::UTC).unwrap().to_string()
    }

    #[test]
    fn fields_steps_names_and_descriptors() {
        assert_eq!(next("*/15 * * * *", "2026-11-27T04:07:30Z"), "2026-11-27T04:15:00Z");
        assert_eq!(next("*/1 * * * *", "2026-11-27T04:07:00Z"), "2026-11-27T04:08:00Z");
        assert_eq!(next("0 9-17/4 * * mon-fri", "2026-11-27T10:00:00Z"), "2026-11-27T13:00:00Z"); // a Friday
        assert_eq!(next("0 9 * * MON-FRI", "2026-11-27T10:00:00Z"), "2026-11-30T09:00:00Z"); // next Monday
        assert_eq!(next("@hourly", "2026-11-27T04:07:00Z"), "2026-11-27T05:00:00Z");
        assert_eq!(next("@daily", "2026-11-27T04:07:00Z"), "2026-11-28T00:00:00Z");
        assert_eq!(next("@weekly", "2026-11-27T04:07:00Z"), "2026-11-29T00:00:00Z");
        assert_eq!(next("@monthly", "2026-11-27T04:07:00Z"), "2026-12-01T00:00:00Z");
        assert_eq!(next("@yearly", "2026-11-27T04:07:00Z"), "2027-01-01T00:00:00Z");
        assert_eq!(next("30 2 29 feb *", "2026-01-01T00:00:00Z"), "2028-02-29T02:30:00Z");
        assert_eq!(next("0 0 * * 7", "2026-11-27T04:07:00Z"), "2026-11-29T00:00:00Z"); // 7 = Sunday
        assert_eq!(next("0 12 1,15 JAN,jul ?", "2026-11-27T00:00:00Z"), "2027-01-01T12:00:00Z");
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: the 1st of the month OR any Monday.
        assert_eq!(next("0 0 1 * mon", "2026-11-27T00:00:00Z"), "2026-11-30T00:00:00Z");
        assert_eq!(next("0 0 1 * mon", "2026-11-30T00:00:00Z"), "2026-12-01T00:00:00Z");
    }

    #[test]
    fn bad_schedules_are_rejected() {
        for bad in ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "x * * * *", "@every 5m", "5-1 * * * *"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let tz = time_zone(Some("Europe/Berlin")).unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // Winter: 09:00 CET = 08:00Z; summer: 09:00 CEST = 07:00Z.
        assert_eq!(s.next(ts("2026-01-10T12:00:00Z"), &tz).unwrap().to_string(), "2026-01-11T08:00:00Z");
        assert_eq!(s.next(ts("2026-07-10T12:00:00Z"), &tz).unwrap().to_string(), "2026-07-11T07:00:00Z");
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
