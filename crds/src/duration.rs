//! Duration strings as written in specs: `500ms`, `10s`, `1m`, `1h30m`, `7d`.
//!
//! The grammar is Go's `time.ParseDuration` restricted to whole numbers, plus a `d` (24 h)
//! unit for retention periods: one or more `<digits><unit>` groups, units `ms`, `s`, `m`,
//! `h`, `d`. The CRD schema carries the same grammar as a regular expression
//! ([`DURATION_PATTERN`]); intervals that CEL rules compare with `duration()` use
//! [`INTERVAL_PATTERN`], which leaves out `d` because CEL (like Go) has no day unit.

use std::time::Duration;

/// Regular expression for any duration string (intervals and retention periods).
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h|d))+$";

/// Regular expression for collection intervals: no `d` unit, so that CEL `duration()`
/// accepts every value the pattern lets through.
pub const INTERVAL_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// Shortest collection interval accepted (sample, heartbeat, SSH command).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Longest collection interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    /// The rejected input.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a duration string such as `500ms`, `10s`, `1m`, `1h30m` or `7d`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(fail("must not be empty; write e.g. \"10s\" or \"500ms\""));
    }
    let bytes = input.as_bytes();
    let mut total = Duration::ZERO;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(fail("expected a whole number before each unit"));
        }
        let number: u64 = input[start..i]
            .parse()
            .map_err(|_| fail("number is too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match &input[unit_start..i] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            "" => return Err(fail("missing unit; use ms, s, m, h or d")),
            _ => return Err(fail("unknown unit; use ms, s, m, h or d")),
        };
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| fail("number is too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| fail("number is too large"))?;
    }
    Ok(total)
}

/// Parses a collection interval and checks it lies within
/// [`MIN_INTERVAL`]..=[`MAX_INTERVAL`]. Returns a message fit for a [`crate::FieldError`].
pub(crate) fn check_interval(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input).map_err(|e| e.to_string())?;
    if input.contains('d') {
        return Err(format!(
            "invalid interval {input:?}: use ms, s, m or h units (at most \"24h\")"
        ));
    }
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&duration) {
        return Err(format!(
            "invalid interval {input:?}: must be between 100ms and 24h"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_durations() {
        for (input, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5400)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("1m500ms", Duration::from_millis(60_500)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_malformed_durations_with_a_reason() {
        for (input, reason) in [
            ("", "must not be empty"),
            ("10", "missing unit"),
            ("s", "whole number"),
            ("1.5s", "missing unit"),
            ("10 s", "missing unit"),
            ("10sec", "unknown unit"),
            ("-1s", "whole number"),
            ("99999999999999999999s", "too large"),
            ("5000000000d", "too large"),
        ] {
            let err = parse_duration(input).expect_err(input);
            assert!(err.reason.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn intervals_are_bounded() {
        assert!(check_interval("100ms").is_ok());
        assert!(check_interval("24h").is_ok());
        assert!(
            check_interval("99ms")
                .unwrap_err()
                .contains("between 100ms and 24h")
        );
        assert!(
            check_interval("24h1s")
                .unwrap_err()
                .contains("between 100ms and 24h")
        );
        assert!(check_interval("1d").unwrap_err().contains("ms, s, m or h"));
        assert!(
            check_interval("ten")
                .unwrap_err()
                .contains("invalid duration")
        );
    }

    #[test]
    fn the_schema_patterns_agree_with_the_parser() {
        // The `regex` crate speaks the RE2 dialect the API server (Go) uses for `pattern`.
        let any = regex::Regex::new(DURATION_PATTERN).unwrap();
        let interval = regex::Regex::new(INTERVAL_PATTERN).unwrap();
        for input in [
            "10s", "500ms", "1h30m", "7d", "1m500ms", "", "10", "1.5s", "10sec", "1w", "s", "-1s",
        ] {
            let parses = parse_duration(input).is_ok();
            assert_eq!(any.is_match(input), parses, "{input}");
            assert_eq!(
                interval.is_match(input),
                parses && !input.contains('d'),
                "{input}"
            );
        }
    }
}
