//! What a session asks its device for, and how it adapts when the device refuses: pure
//! functions from the Device spec, the Capabilities answer and the refusals seen so far
//! to the Subscribe request.

use std::time::Duration;

use crds::{DeviceSpec, Encoding, SubscribeMode, SubscriptionMode};
use proto::gnmi;

/// Interval asked for when an on-change subscription is turned into a SAMPLE one and
/// names neither a heartbeat nor a sample interval.
pub const FALLBACK_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Encodings netpulse decodes, in the order chosen when the Device names none.
const DECODABLE: [gnmi::Encoding; 3] = [
    gnmi::Encoding::Proto,
    gnmi::Encoding::JsonIetf,
    gnmi::Encoding::Json,
];

/// What a session learned about its device, kept across reconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The device refused on-change (and target-defined) subscriptions: ask for SAMPLE.
    pub sample_instead_of_on_change: bool,
    /// Encodings the device refused in a Subscribe request.
    pub refused_encodings: Vec<gnmi::Encoding>,
    /// Subscription paths (as the Device writes them) the device refused by name.
    pub refused_paths: Vec<String>,
}

/// How to react to a refused Subscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Ask for SAMPLE where on-change was asked for.
    SampleInsteadOfOnChange,
    /// Stop asking for this encoding.
    RefuseEncoding(gnmi::Encoding),
    /// Stop asking for the subscription with this path (the refusal named it); the
    /// others go on, and the device is Degraded.
    DropSubscription(String),
}

impl Plan {
    /// `spec` without the subscriptions the device refused by path: what sessions ask
    /// for and track.
    pub fn effective(&self, spec: &DeviceSpec) -> DeviceSpec {
        let mut spec = spec.clone();
        spec.gnmi
            .subscriptions
            .retain(|s| !self.refused_paths.contains(&s.path));
        spec
    }

    /// Whether the spec asks for modes this plan turns into SAMPLE.
    fn has_on_change(spec: &DeviceSpec) -> bool {
        spec.gnmi
            .subscriptions
            .iter()
            .any(|s| s.mode != SubscriptionMode::Sample)
    }

    /// The next thing to give up after the device refused the request with `message`,
    /// or `None` when nothing is left to try. The message decides when it names the
    /// encoding or the mode; then, when it names the path of one of several
    /// subscriptions, only that one is dropped; otherwise the mode goes first (commonly
    /// unsupported, and SAMPLE loses nothing but latency).
    pub fn fallback(
        &self,
        spec: &DeviceSpec,
        used: gnmi::Encoding,
        message: &str,
    ) -> Option<Fallback> {
        let lower = message.to_ascii_lowercase();
        let can_sample = Self::has_on_change(spec) && !self.sample_instead_of_on_change;
        let can_encode = DECODABLE
            .iter()
            .any(|e| *e != used && !self.refused_encodings.contains(e));
        let about_encoding = lower.contains("encoding");
        let about_mode = [
            "on_change",
            "on-change",
            "onchange",
            "mode",
            "target_defined",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if about_encoding && !about_mode && can_encode {
            return Some(Fallback::RefuseEncoding(used));
        }
        if about_mode && can_sample {
            return Some(Fallback::SampleInsteadOfOnChange);
        }
        // A refusal naming one of several subscriptions' paths costs only that one.
        let subscriptions = &spec.gnmi.subscriptions;
        if subscriptions.len() > 1
            && let Some(named) = subscriptions
                .iter()
                .filter(|s| names_path(message, &s.path))
                .max_by_key(|s| s.path.len())
        {
            return Some(Fallback::DropSubscription(named.path.clone()));
        }
        if can_sample {
            return Some(Fallback::SampleInsteadOfOnChange);
        }
        can_encode.then_some(Fallback::RefuseEncoding(used))
    }

    /// Records a fallback; returns the quirk in plain words.
    pub fn apply(&mut self, fallback: &Fallback, spec: &DeviceSpec) -> String {
        match fallback {
            Fallback::SampleInsteadOfOnChange => {
                self.sample_instead_of_on_change = true;
                format!(
                    "device refuses on_change subscriptions; sampling every {:?} instead",
                    sample_instead_interval(spec)
                )
            }
            Fallback::RefuseEncoding(encoding) => {
                self.refused_encodings.push(*encoding);
                format!("device refuses encoding {}", encoding_name(*encoding))
            }
            Fallback::DropSubscription(path) => {
                self.refused_paths.push(path.clone());
                format!("device refuses subscription {path}; collecting the others")
            }
        }
    }
}

/// Whether `message` names subscription path `path`, as written or in canonical form,
/// as a whole path (`/system/state` is not named by `/system/state/memory`).
fn names_path(message: &str, path: &str) -> bool {
    let canonical = path.parse::<model::Path>().map(|p| p.to_string()).ok();
    let whole = |needle: &str| {
        message.match_indices(needle).any(|(at, _)| {
            let mut rest = message[at + needle.len()..].chars();
            match rest.next() {
                None => true,
                // A full stop ends a sentence, not a path (`...` is a path element).
                Some('.') => rest.next().is_none_or(char::is_whitespace),
                Some(c) => !(c.is_alphanumeric() || "/[]=-_:*".contains(c)),
            }
        })
    };
    !path.is_empty() && (whole(path) || canonical.as_deref().is_some_and(whole))
}

/// Interval used for on-change subscriptions the device makes us sample.
pub fn sample_instead_interval(spec: &DeviceSpec) -> Duration {
    spec.gnmi
        .subscriptions
        .iter()
        .filter(|s| s.mode != SubscriptionMode::Sample)
        .filter_map(|s| s.heartbeat_interval.as_deref())
        .filter_map(|d| crds::parse_duration(d).ok())
        .min()
        .unwrap_or(FALLBACK_SAMPLE_INTERVAL)
}

/// Lowercase name of an encoding, as the Device spec writes it.
pub fn encoding_name(encoding: gnmi::Encoding) -> &'static str {
    match encoding {
        gnmi::Encoding::Proto => "proto",
        gnmi::Encoding::Json => "json",
        gnmi::Encoding::JsonIetf => "json_ietf",
        gnmi::Encoding::Bytes => "bytes",
        gnmi::Encoding::Ascii => "ascii",
    }
}

fn from_spec(encoding: Encoding) -> gnmi::Encoding {
    match encoding {
        Encoding::Proto => gnmi::Encoding::Proto,
        Encoding::Json => gnmi::Encoding::Json,
        Encoding::JsonIetf => gnmi::Encoding::JsonIetf,
    }
}

/// The encoding to ask for, and a note when it is not the one the Device prefers.
///
/// `supported` is the Capabilities answer (`None` when the device does not implement
/// Capabilities, or lists no encodings). The Device's preference wins when the device
/// supports it; otherwise the first decodable encoding the device supports.
pub fn choose_encoding(
    preferred: Option<Encoding>,
    supported: Option<&[i32]>,
    plan: &Plan,
) -> Result<(gnmi::Encoding, Option<String>), String> {
    let preferred = preferred.map(from_spec);
    let supported = supported.filter(|s| !s.is_empty());
    let usable = |e: &gnmi::Encoding| {
        !plan.refused_encodings.contains(e) && supported.is_none_or(|s| s.contains(&(*e as i32)))
    };
    let chosen = preferred
        .into_iter()
        .chain(DECODABLE)
        .find(usable)
        .ok_or_else(|| {
            let offered: Vec<&str> = supported
                .unwrap_or_default()
                .iter()
                .filter_map(|e| gnmi::Encoding::try_from(*e).ok())
                .map(encoding_name)
                .collect();
            format!(
                "device offers no encoding netpulse decodes (proto, json, json_ietf){}",
                if offered.is_empty() {
                    String::new()
                } else {
                    format!("; it offers {}", offered.join(", "))
                }
            )
        })?;
    let note = match preferred {
        Some(p) if p != chosen => Some(format!(
            "device does not support encoding {}; using {}",
            encoding_name(p),
            encoding_name(chosen)
        )),
        _ => None,
    };
    Ok((chosen, note))
}

/// Interval of mode `poll` and `once`.
pub fn poll_interval(spec: &DeviceSpec) -> Duration {
    spec.gnmi
        .poll_interval
        .as_deref()
        .and_then(|d| crds::parse_duration(d).ok())
        .unwrap_or(FALLBACK_SAMPLE_INTERVAL)
}

/// The Subscribe request: one list of the device's subscriptions, in the Device's mode.
pub fn subscribe_request(
    spec: &DeviceSpec,
    plan: &Plan,
    encoding: gnmi::Encoding,
) -> Result<gnmi::SubscribeRequest, String> {
    let mut subscriptions = Vec::with_capacity(spec.gnmi.subscriptions.len());
    let interval_ns = |v: &Option<String>| -> Result<u64, String> {
        v.as_deref()
            .map(|d| {
                crds::parse_duration(d)
                    .map(|d| d.as_nanos() as u64)
                    .map_err(|e| e.to_string())
            })
            .transpose()
            .map(|d| d.unwrap_or(0))
    };
    for s in &spec.gnmi.subscriptions {
        let path: model::Path = s
            .path
            .parse()
            .map_err(|e| format!("subscription path: {e}"))?;
        let mut sample_interval = interval_ns(&s.sample_interval)?;
        let mode = match s.mode {
            SubscriptionMode::Sample => gnmi::SubscriptionMode::Sample,
            _ if plan.sample_instead_of_on_change => {
                sample_interval = sample_instead_interval(spec).as_nanos() as u64;
                gnmi::SubscriptionMode::Sample
            }
            SubscriptionMode::OnChange => gnmi::SubscriptionMode::OnChange,
            SubscriptionMode::TargetDefined => gnmi::SubscriptionMode::TargetDefined,
        };
        subscriptions.push(gnmi::Subscription {
            path: Some(gnmi::Path::from(&path)),
            mode: mode as i32,
            sample_interval,
            suppress_redundant: s.suppress_redundant,
            heartbeat_interval: interval_ns(&s.heartbeat_interval)?,
        });
    }
    Ok(gnmi::SubscribeRequest {
        request: Some(gnmi::subscribe_request::Request::Subscribe(
            gnmi::SubscriptionList {
                subscription: subscriptions,
                mode: match spec.gnmi.mode {
                    SubscribeMode::Stream => gnmi::subscription_list::Mode::Stream,
                    SubscribeMode::Poll => gnmi::subscription_list::Mode::Poll,
                    SubscribeMode::Once => gnmi::subscription_list::Mode::Once,
                } as i32,
                encoding: encoding as i32,
                updates_only: spec.gnmi.updates_only,
                ..Default::default()
            },
        )),
        ..Default::default()
    })
}

/// How long a stream may stay silent: `intervals` times the longest sample or heartbeat
/// interval, at least `min`. `None` for on-change subscriptions without a heartbeat: such
/// a device may rightly say nothing for hours, and HTTP/2 keepalive detects a dead peer.
pub fn idle_timeout(
    spec: &DeviceSpec,
    plan: &Plan,
    intervals: u32,
    min: Duration,
) -> Option<Duration> {
    if !spec.gnmi.mode.is_stream() {
        // Every poll is answered: silence longer than a few polls means a dead peer.
        return Some((poll_interval(spec) * intervals).max(min));
    }
    let mut longest: Option<Duration> = None;
    for s in &spec.gnmi.subscriptions {
        let sampled = s.mode == SubscriptionMode::Sample || plan.sample_instead_of_on_change;
        let interval = if sampled && s.mode == SubscriptionMode::Sample {
            s.sample_interval
                .as_deref()
                .and_then(|d| crds::parse_duration(d).ok())
        } else if sampled {
            Some(sample_instead_interval(spec))
        } else {
            None
        };
        // A heartbeat bounds the silence of on-change and suppress-redundant leaves.
        let heartbeat = s
            .heartbeat_interval
            .as_deref()
            .and_then(|d| crds::parse_duration(d).ok());
        let bound = match (interval, heartbeat, s.suppress_redundant) {
            (_, Some(h), _) => Some(h),
            (Some(i), None, false) => Some(i),
            _ => None,
        };
        // A leaf with no bound on its silence keeps the stream quiet legitimately only
        // if no other subscription bounds it; the longest bound wins either way.
        if let Some(b) = bound {
            longest = Some(longest.map_or(b, |l| l.max(b)));
        }
    }
    longest.map(|d| (d * intervals).max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_change(path: &str) -> crds::Subscription {
        crds::Subscription {
            path: path.into(),
            mode: SubscriptionMode::OnChange,
            sample_interval: None,
            heartbeat_interval: None,
            suppress_redundant: false,
        }
    }

    fn list(req: gnmi::SubscribeRequest) -> gnmi::SubscriptionList {
        match req.request {
            Some(gnmi::subscribe_request::Request::Subscribe(list)) => list,
            _ => panic!("not a subscribe request"),
        }
    }

    #[test]
    fn request_carries_every_subscription_with_intervals_in_ns() {
        let spec = DeviceSpec::new("127.0.0.1");
        let list = list(subscribe_request(&spec, &Plan::default(), gnmi::Encoding::Proto).unwrap());
        assert_eq!(list.subscription.len(), spec.gnmi.subscriptions.len());
        assert_eq!(list.mode, gnmi::subscription_list::Mode::Stream as i32);
        let first = &list.subscription[0];
        assert_eq!(first.sample_interval, 10_000_000_000);
        let path = proto::full_path(None, first.path.as_ref()).unwrap();
        assert_eq!(path.to_string(), spec.gnmi.subscriptions[0].path);
    }

    #[test]
    fn a_refusal_naming_one_of_several_paths_drops_only_that_one() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        spec.gnmi.subscriptions = vec![
            crds::Subscription::sample("/interfaces/interface[name=*]/state/counters", "10s"),
            crds::Subscription::sample("/system/state", "10s"),
            crds::Subscription::sample("/system/state/memory", "10s"),
        ];
        let plan = Plan::default();
        let proto = gnmi::Encoding::Proto;
        assert_eq!(
            plan.fallback(&spec, proto, "unsupported path /system/state"),
            Some(Fallback::DropSubscription("/system/state".into()))
        );
        assert_eq!(
            plan.fallback(&spec, proto, "unsupported path /system/state/memory."),
            Some(Fallback::DropSubscription("/system/state/memory".into()))
        );
        // A longer path that merely starts with a subscribed one names neither.
        assert_ne!(
            plan.fallback(&spec, proto, "unsupported path /system/state/cpu"),
            Some(Fallback::DropSubscription("/system/state".into()))
        );
        let mut plan = plan;
        let quirk = plan.apply(&Fallback::DropSubscription("/system/state".into()), &spec);
        assert!(quirk.contains("/system/state"), "{quirk}");
        let effective = plan.effective(&spec);
        let paths: Vec<&str> = effective
            .gnmi
            .subscriptions
            .iter()
            .map(|s| s.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "/interfaces/interface[name=*]/state/counters",
                "/system/state/memory"
            ]
        );
        // The last subscription is never dropped: refusing it refuses the device.
        let mut one = spec.clone();
        one.gnmi.subscriptions.truncate(1);
        assert_ne!(
            plan.fallback(
                &one,
                proto,
                "unsupported path /interfaces/interface[name=*]/state/counters"
            ),
            Some(Fallback::DropSubscription(
                "/interfaces/interface[name=*]/state/counters".into()
            ))
        );
    }

    #[test]
    fn refused_on_change_becomes_sample_at_the_heartbeat() {
        let mut spec = DeviceSpec::new("127.0.0.1");
        let mut sub = on_change("/interfaces/interface[name=*]/state/oper-status");
        sub.heartbeat_interval = Some("30s".into());
        spec.gnmi.subscriptions = vec![crds::Subscription::sample("/a", "1s"), sub];
        let mut plan = Plan::default();
        let fallback = plan
            .fallback(&spec, gnmi::Encoding::Proto, "ON_CHANGE not supported")
            .unwrap();
        assert_eq!(fallback, Fallback::SampleInsteadOfOnChange);
        let quirk = plan.apply(&fallback, &spec);
        assert!(
            quirk.contains("on_change") && quirk.contains("30s"),
            "{quirk}"
        );
        let list = list(subscribe_request(&spec, &plan, gnmi::Encoding::Proto).unwrap());
        assert_eq!(
            list.subscription[1].mode,
            gnmi::SubscriptionMode::Sample as i32
        );
        assert_eq!(list.subscription[1].sample_interval, 30_000_000_000);
        // Nothing on-change is left to give up: the encoding goes next, then nothing.
        let next = plan.fallback(&spec, gnmi::Encoding::Proto, "no").unwrap();
        assert_eq!(next, Fallback::RefuseEncoding(gnmi::Encoding::Proto));
        plan.refused_encodings = DECODABLE.to_vec();
        assert_eq!(plan.fallback(&spec, gnmi::Encoding::Json, "no"), None);
    }

    #[test]
    fn an_encoding_complaint_drops_the_encoding_first() {
        let mut spec = DeviceSpec::new("127.0.0.1");
        spec.gnmi.subscriptions = vec![on_change("/a")];
        let plan = Plan::default();
        assert_eq!(
            plan.fallback(&spec, gnmi::Encoding::Proto, "unsupported encoding PROTO"),
            Some(Fallback::RefuseEncoding(gnmi::Encoding::Proto))
        );
    }

    #[test]
    fn encoding_follows_capabilities_unless_the_device_prefers_one() {
        let plan = Plan::default();
        let ietf_only = [gnmi::Encoding::JsonIetf as i32];
        assert_eq!(
            choose_encoding(None, Some(&ietf_only), &plan).unwrap(),
            (gnmi::Encoding::JsonIetf, None)
        );
        let (chosen, note) =
            choose_encoding(Some(Encoding::Proto), Some(&ietf_only), &plan).unwrap();
        assert_eq!(chosen, gnmi::Encoding::JsonIetf);
        assert!(note.unwrap().contains("does not support encoding proto"));
        assert_eq!(
            choose_encoding(Some(Encoding::Json), None, &plan)
                .unwrap()
                .0,
            gnmi::Encoding::Json
        );
        let ascii = [gnmi::Encoding::Ascii as i32];
        let error = choose_encoding(None, Some(&ascii), &plan).unwrap_err();
        assert!(error.contains("it offers ascii"), "{error}");
        let refused = Plan {
            refused_encodings: vec![gnmi::Encoding::Proto],
            ..Plan::default()
        };
        assert_eq!(
            choose_encoding(None, None, &refused).unwrap().0,
            gnmi::Encoding::JsonIetf
        );
    }

    #[test]
    fn poll_and_once_devices_ask_for_their_mode() {
        let mut spec = DeviceSpec::new("127.0.0.1");
        spec.gnmi.mode = SubscribeMode::Poll;
        spec.gnmi.poll_interval = Some("30s".into());
        spec.gnmi.updates_only = true;
        let l = list(subscribe_request(&spec, &Plan::default(), gnmi::Encoding::Proto).unwrap());
        assert_eq!(l.mode, gnmi::subscription_list::Mode::Poll as i32);
        assert!(l.updates_only);
        let min = Duration::from_secs(15);
        assert_eq!(
            idle_timeout(&spec, &Plan::default(), 3, min),
            Some(Duration::from_secs(90))
        );
        spec.gnmi.mode = SubscribeMode::Once;
        let l = list(subscribe_request(&spec, &Plan::default(), gnmi::Encoding::Proto).unwrap());
        assert_eq!(l.mode, gnmi::subscription_list::Mode::Once as i32);
    }

    #[test]
    fn idle_timeout_follows_the_longest_bounded_interval() {
        let min = Duration::from_secs(15);
        let mut spec = DeviceSpec::new("127.0.0.1");
        let plan = Plan::default();
        spec.gnmi.subscriptions = vec![
            crds::Subscription::sample("/a", "1s"),
            crds::Subscription::sample("/b", "20s"),
        ];
        assert_eq!(
            idle_timeout(&spec, &plan, 3, min),
            Some(Duration::from_secs(60))
        );
        spec.gnmi.subscriptions = vec![crds::Subscription::sample("/a", "1s")];
        assert_eq!(idle_timeout(&spec, &plan, 3, min), Some(min));
        spec.gnmi.subscriptions = vec![on_change("/a")];
        assert_eq!(idle_timeout(&spec, &plan, 3, min), None);
        let sampled = Plan {
            sample_instead_of_on_change: true,
            ..Plan::default()
        };
        assert_eq!(
            idle_timeout(&spec, &sampled, 3, min),
            Some(FALLBACK_SAMPLE_INTERVAL * 3)
        );
    }
}
