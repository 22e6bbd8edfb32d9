//! Value syntaxes used in the config file: durations (`"30s"`), sizes
//! (`"512MiB"`), rates (`"30/min"`), and [`Lenient`], the leaf wrapper that
//! lets one bad value be reported without hiding the others.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A config leaf that never fails deserialization: a wrongly typed value is
/// kept as its error message so validation can report it next to every other
/// bad key instead of stopping at the first.
#[derive(Debug, Clone)]
pub struct Lenient<T>(pub Result<T, String>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = toml::Value::deserialize(deserializer)?;
        let shown = value.to_string();
        Ok(Lenient(T::deserialize(value).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.trim().trim_end_matches('\n');
            format!("{shown}: {msg}")
        })))
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h 30m"` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("{text:?} is not a duration: write a number and a unit (ms, s, m, h, d), like \"30s\", \"5m\" or \"1h 30m\"")
    })
}

/// Parses `"512MiB"`, `"2GB"`, `"64KiB"` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("{text:?} is not a size: write a number and a unit (KiB, MiB, GiB, or KB, MB, GB), like \"512MiB\" or \"2GiB\"")
        })
}

/// A rate such as `"30/min"`: `count` requests per `per`, with a burst of
/// `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/sec`, `N/min`, `N/h`, `N/hour`, or `N/<duration>` such as `N/10s`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("{text:?} is not a rate like \"30/min\" or \"2000/s\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count).ok_or_else(bad)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if per.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, humantime::format_duration(self.per))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_rates() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_size("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_size("32KiB").unwrap(), 32 * 1024);
        assert!(parse_size("lots").is_err());
        let r = Rate::parse("30/min").unwrap();
        assert_eq!((r.count.get(), r.per), (30, Duration::from_secs(60)));
        assert_eq!(Rate::parse("2000/s").unwrap().count.get(), 2000);
        assert_eq!(Rate::parse("5/10s").unwrap().per, Duration::from_secs(10));
        for bad in ["", "30", "0/s", "x/min", "30/fortnightly", "30/0s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
