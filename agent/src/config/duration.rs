//! Durations in the config: a number of seconds (may be fractional) or a string such as
//! `"10ms"`, `"1.5s"` or `"2min"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration as written in the file, converted (and range-checked) during validation so
/// that a bad value is one of many collected errors rather than a fatal parse error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawDuration {
    Seconds(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration string such as \"10ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

const HINT: &str =
    "expected a number of seconds (e.g. 1 or 0.5) or a string such as \"10ms\", \"1s\", \"2min\"";

impl RawDuration {
    /// The duration, or a message saying why the value is not one.
    pub(crate) fn to_duration(&self) -> Result<Duration, String> {
        match self {
            RawDuration::Seconds(s) => {
                if !s.is_finite() || *s < 0.0 {
                    return Err(format!("{s} is not a valid duration; {HINT}"));
                }
                // Anything above a day is a typo in every key that takes a duration.
                if *s > 86_400.0 {
                    return Err(format!("{s} seconds is more than a day; {HINT}"));
                }
                // Round to whole nanoseconds so that 0.01 means exactly 10 ms.
                Ok(Duration::from_nanos((s * 1e9).round() as u64))
            }
            RawDuration::Text(t) => parse_text(t),
        }
    }
}

fn parse_text(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    // A plain number in a string ("1.5") means seconds, as it would unquoted.
    if let Ok(s) = t.parse::<f64>() {
        return RawDuration::Seconds(s).to_duration();
    }
    // humantime does not take fractions ("1.5s"); handle a single fractional term here.
    if let Some(d) = parse_fraction(t) {
        return d;
    }
    match humantime::parse_duration(t) {
        Ok(d) if d > Duration::from_secs(86_400) => {
            Err(format!("\"{t}\" is more than a day; {HINT}"))
        }
        Ok(d) => Ok(d),
        Err(e) => Err(format!("\"{t}\" is not a duration ({e}); {HINT}")),
    }
}

/// `"1.5s"`, `"0.5ms"`, `"2.5min"`: a number with a fraction and one unit.
fn parse_fraction(t: &str) -> Option<Result<Duration, String>> {
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = t.split_at(split);
    if !num.contains('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        _ => return None,
    };
    Some(RawDuration::Seconds(value * scale).to_duration())
}

/// Format a duration the way the config accepts it: whole seconds as a number, anything
/// else as a millisecond (or finer) string.
pub fn to_toml(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else if d.as_nanos().is_multiple_of(1_000_000) {
        format!("\"{}ms\"", d.as_millis())
    } else if d.as_nanos().is_multiple_of(1_000) {
        format!("\"{}us\"", d.as_micros())
    } else {
        format!("\"{}ns\"", d.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Result<Duration, String> {
        RawDuration::Seconds(s).to_duration()
    }
    fn text(t: &str) -> Result<Duration, String> {
        RawDuration::Text(t.into()).to_duration()
    }

    #[test]
    fn numbers_are_seconds() {
        assert_eq!(secs(1.0), Ok(Duration::from_secs(1)));
        assert_eq!(secs(0.01), Ok(Duration::from_millis(10)));
        assert_eq!(secs(40.95), Ok(Duration::from_millis(40_950)));
        assert!(secs(-1.0).is_err());
        assert!(secs(f64::NAN).is_err());
        assert!(secs(f64::INFINITY).is_err());
        assert!(secs(1e300).is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(text("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(text("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(text("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(text("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(text("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(text("2"), Ok(Duration::from_secs(2)));
        assert!(text("").is_err());
        assert!(text("soon").is_err());
        assert!(text("10 parsecs").is_err());
        assert!(text("1000000h").is_err());
        assert!(text("1.5.5s").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::from_secs(3),
            Duration::from_millis(10),
            Duration::from_millis(40_950),
            Duration::from_micros(1500),
            Duration::ZERO,
        ] {
            let s = to_toml(d);
            let back = match s.strip_prefix('"') {
                Some(t) => text(t.trim_end_matches('"')),
                None => secs(s.parse().unwrap()),
            };
            assert_eq!(back, Ok(d), "{s}");
        }
    }
}
