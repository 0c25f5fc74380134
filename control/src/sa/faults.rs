//! Fault specification for the soft SA, e.g.
//! `delay=0-50ms,fail=0.1,reset=0.05,noanswer=0.02,early=0.5,restart=0.01`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Faults the soft SA injects, each drawn per join from the seeded generator.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultSpec {
    /// Answer delay, uniform in this range.
    pub delay: (Duration, Duration),
    /// Probability of a failure status.
    pub fail: f64,
    /// Probability of an ENETRESET-like status.
    pub reset: f64,
    /// Probability of an EINVAL-like status.
    pub einval: f64,
    /// Probability of never answering.
    pub noanswer: f64,
    /// Probability that the callback starts before `join` returns.
    pub early: f64,
    /// Probability, per join, that the SA restarts first (forgetting every
    /// member and possibly changing the broadcast MTU).
    pub restart: f64,
}

/// A fault spec that could not be parsed; the message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad SA fault spec: {0}")]
pub struct FaultSpecError(String);

const KNOWN: &str = "delay, fail, reset, einval, noanswer, early, restart";

impl FaultSpec {
    /// No faults: every join succeeds at once.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut out = FaultSpec::none();
        let spec = spec.trim();
        if spec.is_empty() || spec == "none" {
            return Ok(out);
        }
        for item in spec.split(',').map(str::trim) {
            let Some((name, value)) = item.split_once('=') else {
                return Err(FaultSpecError(format!(
                    "`{item}`: expected name=value (names: {KNOWN})"
                )));
            };
            let (name, value) = (name.trim(), value.trim());
            match name {
                "delay" => {
                    out.delay =
                        parse_delay(value).map_err(|e| FaultSpecError(format!("`{item}`: {e}")))?
                }
                "fail" => out.fail = parse_prob(item, value)?,
                "reset" => out.reset = parse_prob(item, value)?,
                "einval" => out.einval = parse_prob(item, value)?,
                "noanswer" => out.noanswer = parse_prob(item, value)?,
                "early" => out.early = parse_prob(item, value)?,
                "restart" => out.restart = parse_prob(item, value)?,
                _ => {
                    return Err(FaultSpecError(format!(
                        "unknown fault `{name}` (known: {KNOWN})"
                    )))
                }
            }
        }
        if out.fail + out.reset + out.einval > 1.0 {
            return Err(FaultSpecError(
                "fail + reset + einval must not exceed 1".into(),
            ));
        }
        Ok(out)
    }
}

fn parse_prob(item: &str, value: &str) -> Result<f64, FaultSpecError> {
    match value.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(_) => Err(FaultSpecError(format!(
            "`{item}`: probability must be between 0 and 1"
        ))),
        Err(_) => Err(FaultSpecError(format!(
            "`{item}`: expected a probability like 0.05"
        ))),
    }
}

fn parse_delay(value: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = match value.split_once('-') {
        Some((lo, hi)) => {
            // "0-50ms": the unit of the upper bound applies to a bare lower bound.
            let unit = hi.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
            let lo = if lo.chars().all(|c| c.is_ascii_digit() || c == '.') {
                format!("{lo}{unit}")
            } else {
                lo.to_string()
            };
            (parse_duration(&lo)?, parse_duration(hi)?)
        }
        None => {
            let d = parse_duration(value)?;
            (d, d)
        }
    };
    if lo > hi {
        return Err("delay range must go from low to high".into());
    }
    Ok((lo, hi))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 50ms, got `{s}`"))?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "" => return Err(format!("`{s}` needs a unit (us, ms or s)")),
        _ => return Err(format!("unknown unit `{unit}` (use us, ms or s)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultSpec::parse(s)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay={}-{}us,fail={},reset={},einval={},noanswer={},early={},restart={}",
            self.delay.0.as_micros(),
            self.delay.1.as_micros(),
            self.fail,
            self.reset,
            self.einval,
            self.noanswer,
            self.early,
            self.restart
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let f = FaultSpec::parse(
            "delay=0-50ms,fail=0.1,reset=0.05,noanswer=0.02,early=0.5,restart=0.01",
        )
        .unwrap();
        assert_eq!(f.delay, (Duration::ZERO, Duration::from_millis(50)));
        assert_eq!(
            (f.fail, f.reset, f.noanswer, f.early, f.restart),
            (0.1, 0.05, 0.02, 0.5, 0.01)
        );
        assert_eq!(
            FaultSpec::parse("delay=5ms").unwrap().delay,
            (Duration::from_millis(5), Duration::from_millis(5))
        );
        assert_eq!(FaultSpec::parse("").unwrap(), FaultSpec::none());
        // Display round-trips.
        assert_eq!(FaultSpec::parse(&f.to_string()).unwrap(), f);
    }

    #[test]
    fn bad_specs_give_one_line_errors() {
        for (spec, needle) in [
            ("fail=1.5", "between 0 and 1"),
            ("fial=0.1", "unknown fault `fial`"),
            ("delay=abc", "duration"),
            ("delay=50-10ms", "low to high"),
            ("delay=10", "unit"),
            ("fail", "name=value"),
            ("fail=0.6,reset=0.5", "must not exceed"),
        ] {
            let e = FaultSpec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
