//! Ways a simulated device can be a difficult peer, switched on per fleet or per device.
//!
//! Written as a comma-separated list of `name` or `name=value` items, for example
//! `refuse-on-change,json-ietf-only,slow=200ms,drop-every=30s,silent-after=60s,
//! malformed-path-every=100,oversize=5000000,drop-when-behind`. Durations take `ms`, `s`, `m` or `h`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How a device misbehaves. The default misbehaves in no way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// `refuse-on-change`: a STREAM Subscribe with any ON_CHANGE subscription fails with
    /// UNIMPLEMENTED (SAMPLE still works).
    pub refuse_on_change: bool,
    /// `json-ietf-only`: Capabilities lists only JSON_IETF; Get and Subscribe asking for any
    /// other encoding fail with UNIMPLEMENTED.
    pub json_ietf_only: bool,
    /// `slow=DURATION`: waits this long before sending each Subscribe response, like a
    /// device whose telemetry agent lags.
    pub send_delay: Option<Duration>,
    /// `drop-every=DURATION`: ends every STREAM subscription with UNAVAILABLE this long
    /// after it started (so a client that re-subscribes is dropped again).
    pub drop_every: Option<Duration>,
    /// `silent-after=DURATION`: this long after a STREAM subscription started, stops
    /// sending on it but keeps it open (no error, no end: only a client-side timeout or
    /// keepalive notices).
    pub silent_after: Option<Duration>,
    /// `malformed-path-every=N`: every Nth notification of a stream carries an update
    /// whose path has an element with an empty name.
    pub malformed_path_every: Option<u32>,
    /// `oversize=BYTES`: the first subscription to the device gets one notification larger
    /// than this many bytes (a huge `/system/state/motd-banner`), once per device.
    pub oversize: Option<usize>,
    /// `drop-when-behind`: when the client does not read fast enough for the device's
    /// send queue (the collector is the slow consumer), drop the sample notifications that
    /// do not fit, as devices with a bounded telemetry queue do, instead of waiting and
    /// sending them late. The sync response and errors are never dropped.
    pub drop_when_behind: bool,
    /// `refuse-path=PREFIX`: a Subscribe with a subscription whose path (canonical form)
    /// starts with PREFIX fails with INVALID_ARGUMENT naming that path, as devices do
    /// for paths their OS does not model.
    pub refuse_path: Option<String>,
}

impl Misbehaviour {
    /// Whether it misbehaves in any way.
    pub fn is_any(&self) -> bool {
        *self != Self::default()
    }
}

/// Why a misbehaviour list could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("misbehaviour {item:?}: {reason}")]
pub struct ParseMisbehaviourError {
    item: String,
    reason: String,
}

impl FromStr for Misbehaviour {
    type Err = ParseMisbehaviourError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut m = Misbehaviour::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            let fail = |reason: &str| ParseMisbehaviourError {
                item: item.to_owned(),
                reason: reason.to_owned(),
            };
            let need = || value.ok_or_else(|| fail("needs a value (name=value)"));
            let duration = || parse_duration(need()?).ok_or_else(|| fail("not a duration"));
            match name {
                "refuse-on-change" | "json-ietf-only" | "drop-when-behind" if value.is_some() => {
                    return Err(fail("takes no value"));
                }
                "refuse-on-change" => m.refuse_on_change = true,
                "json-ietf-only" => m.json_ietf_only = true,
                "drop-when-behind" => m.drop_when_behind = true,
                "slow" => m.send_delay = Some(duration()?),
                "drop-every" => {
                    m.drop_every =
                        Some(positive(duration()?).ok_or_else(|| fail("must be positive"))?)
                }
                "silent-after" => m.silent_after = Some(duration()?),
                "malformed-path-every" => {
                    let n: u32 = need()?.parse().map_err(|_| fail("not a number"))?;
                    m.malformed_path_every = Some(n.max(1));
                }
                "refuse-path" => m.refuse_path = Some(need()?.to_owned()),
                "oversize" => {
                    m.oversize = Some(need()?.parse().map_err(|_| fail("not a number of bytes"))?);
                }
                _ => {
                    return Err(fail(
                        "unknown; one of refuse-on-change, json-ietf-only, slow, drop-every, \
                     silent-after, malformed-path-every, oversize, drop-when-behind, refuse-path",
                    ));
                }
            }
        }
        Ok(m)
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        if self.refuse_on_change {
            items.push("refuse-on-change".into());
        }
        if self.json_ietf_only {
            items.push("json-ietf-only".into());
        }
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        if let Some(d) = self.send_delay {
            items.push(format!("slow={}", ms(d)));
        }
        if let Some(d) = self.drop_every {
            items.push(format!("drop-every={}", ms(d)));
        }
        if let Some(d) = self.silent_after {
            items.push(format!("silent-after={}", ms(d)));
        }
        if let Some(n) = self.malformed_path_every {
            items.push(format!("malformed-path-every={n}"));
        }
        if let Some(n) = self.oversize {
            items.push(format!("oversize={n}"));
        }
        if self.drop_when_behind {
            items.push("drop-when-behind".into());
        }
        if let Some(prefix) = &self.refuse_path {
            items.push(format!("refuse-path={prefix}"));
        }
        f.write_str(&items.join(","))
    }
}

fn positive(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// `250ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_item_and_round_trips() {
        let m: Misbehaviour = "refuse-on-change, json-ietf-only,slow=200ms,drop-every=30s,\
                               silent-after=1m,malformed-path-every=100,oversize=5000000,\
                               drop-when-behind,refuse-path=/system"
            .parse()
            .unwrap();
        let want = Misbehaviour {
            refuse_on_change: true,
            json_ietf_only: true,
            send_delay: Some(Duration::from_millis(200)),
            drop_every: Some(Duration::from_secs(30)),
            silent_after: Some(Duration::from_secs(60)),
            malformed_path_every: Some(100),
            oversize: Some(5_000_000),
            drop_when_behind: true,
            refuse_path: Some("/system".into()),
        };
        assert_eq!(m, want);
        assert_eq!(m.to_string().parse::<Misbehaviour>().unwrap(), want);
        assert_eq!("".parse::<Misbehaviour>().unwrap(), Misbehaviour::default());
        assert!(!Misbehaviour::default().is_any());
    }

    #[test]
    fn refuses_unknown_items_and_bad_values() {
        for bad in [
            "explode",
            "slow",
            "slow=fast",
            "drop-every=0s",
            "refuse-on-change=yes",
            "oversize=-1",
            "malformed-path-every=x",
        ] {
            let err = bad.parse::<Misbehaviour>().unwrap_err();
            assert!(
                err.to_string().contains(bad.split('=').next().unwrap()),
                "{err}"
            );
        }
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
