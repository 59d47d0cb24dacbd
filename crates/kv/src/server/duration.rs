//! Durations written as etcd's flags take them (Go's `time.Duration`
//! syntax): a sequence of numbers with units, such as `10m`, `1m30s`,
//! `250ms` or `1.5s`.

use std::time::Duration;

/// Why a duration flag does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration: {problem} (write it as Go does: 500ms, 10s, 1m30s)")]
pub struct DurationError {
    text: String,
    problem: &'static str,
}

/// Parses Go's duration syntax; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
/// A bare `0` is zero; negative durations are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |problem| DurationError {
        text: text.to_owned(),
        problem,
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| fail("a number lacks its unit"))?;
        if number_len == 0 {
            return Err(fail("a unit lacks its number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| fail("a number is malformed"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(fail("the unit is not one of ns, us, ms, s, m, h")),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * unit_secs)
            .map_err(|_| fail("it is out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_go_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("10m0s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_go_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_say_what_is_wrong() {
        for bad in ["", "10", "s", "5x", "-1s", "1..5s", "1e3s"] {
            let err = parse_go_duration(bad).unwrap_err();
            assert!(
                err.to_string().contains("is not a duration"),
                "{bad}: {err}"
            );
        }
    }
}
