//! HTML pages, rendered on the server. Every asset comes from this binary.

use std::fmt::Write as _;

use model::{DeviceKey, DeviceState, Path, TimestampNs, Value};
use store::{DeviceSummary, SeriesSummary, Store};

use crate::chart::{self, Line};
use crate::health::{HealthJson, percent};
use store::Result;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Human age of a timestamp relative to `now`: `4s ago`, `3m ago`, `never`.
pub fn age(ts: Option<TimestampNs>, now: TimestampNs) -> String {
    let Some(ts) = ts else {
        return "never".into();
    };
    let secs = (now - ts).max(0) / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · netpulse</title><link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/app.css"></head>
<body><header><a class="brand" href="/">netpulse</a></header><main>{body}</main>
<script src="/assets/live.js"></script></body></html>"#,
        title = escape(title)
    )
}

fn state_badge(state: DeviceState) -> String {
    format!(r#"<span class="badge {s}">{s}</span>"#, s = state.as_str())
}

/// The fleet summary and device table (also served alone as a fragment for refreshes).
pub fn device_table(devices: &[DeviceSummary], now: TimestampNs) -> String {
    let synced = devices
        .iter()
        .filter(|d| d.state == DeviceState::Synced)
        .count();
    // Fleet completeness: the devices' shown counts (last window, else totals) summed.
    let (expected, missing) = devices
        .iter()
        .filter_map(health_of)
        .map(|h| {
            let c = h.shown_completeness();
            (c.expected, c.missing)
        })
        .fold((0u64, 0u64), |(e, m), (de, dm)| {
            (e.saturating_add(de), m.saturating_add(dm))
        });
    let complete = if expected > 0 {
        format!(
            " · {} of expected samples received",
            percent(Some(
                expected.saturating_sub(missing) as f64 / expected as f64
            ))
        )
    } else {
        String::new()
    };
    let mut html = format!(
        r#"<p class="summary">{synced} of {total} synced{complete}</p>"#,
        total = devices.len()
    );
    html.push_str(
        r#"<table id="devices"><thead><tr><th>Device</th><th>Address</th><th>State</th><th>Series</th><th>Complete</th><th>Last update</th><th>Last error</th></tr></thead><tbody>"#,
    );
    for d in devices {
        let _ = write!(
            html,
            r#"<tr data-device="{name}"><td><a href="/devices/{name}">{name}</a></td><td>{addr}</td><td>{badge}</td><td>{series}</td><td class="complete"{title}>{complete}</td><td>{age}</td><td class="error">{err}</td></tr>"#,
            name = escape(d.name.as_str()),
            addr = escape(&d.address),
            badge = state_badge(d.state),
            series = d.series,
            complete = complete_cell(d),
            title = complete_title(d),
            age = age(d.last_sample, now),
            err = escape(d.last_error.as_deref().unwrap_or("")),
        );
    }
    if devices.is_empty() {
        html.push_str(r#"<tr><td colspan="7">No devices yet.</td></tr>"#);
    }
    html.push_str("</tbody></table>");
    html
}

/// A health report older than this is shown with its age.
const STALE_HEALTH_NS: i64 = 60_000_000_000;

fn health_of(d: &DeviceSummary) -> Option<HealthJson> {
    HealthJson::from_stored(d.health.as_ref(), d.health_at)
}

/// The device table's completeness: over the collector's last window, else since it started.
fn complete_cell(d: &DeviceSummary) -> String {
    percent(health_of(d).and_then(|h| h.shown_completeness().ratio))
}

fn complete_title(d: &DeviceSummary) -> String {
    match health_of(d) {
        Some(h) if h.shown_completeness().expected > 0 => {
            let c = h.shown_completeness();
            format!(
                r#" title="{} of {} expected samples missing{}""#,
                c.missing,
                c.expected,
                c.seconds
                    .map_or_else(String::new, |s| format!(" in the last {s}s"))
            )
        }
        _ => String::new(),
    }
}

/// The compact health line of a device page (also sent alone by live updates): encoding,
/// completeness, quirks, reconnects, and the report's age once it is older than a minute
/// (the collector writes it every 10 s; an old one means nobody is collecting the device).
/// Empty until a collector has reported.
pub fn health_line(device: &DeviceSummary, now: TimestampNs) -> String {
    let Some(h) = health_of(device) else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(encoding) = &h.encoding {
        parts.push(format!("encoding {}", escape(encoding)));
    }
    let c = h.shown_completeness();
    if c.expected > 0 {
        let over = c.seconds.map_or_else(
            || "since collection started".to_owned(),
            |s| format!("over the last {s}s"),
        );
        parts.push(format!(
            r#"<span class="complete">{} complete</span> {over} ({} of {} samples missing)"#,
            percent(c.ratio),
            c.missing,
            c.expected
        ));
    } else {
        parts.push("no sampled subscriptions to count".to_owned());
    }
    if !h.quirks.is_empty() {
        parts.push(format!("quirks: {}", escape(&h.quirks.join("; "))));
    }
    parts.push(match h.reconnects {
        1 => "1 reconnect".to_owned(),
        n => format!("{n} reconnects"),
    });
    if let Some(at) = device.health_at
        && now - at > STALE_HEALTH_NS
    {
        parts.push(format!("reported {}", age(Some(at), now)));
    }
    parts.join(" · ")
}

/// `/`: every device with its state and freshness.
pub fn index(
    devices: &[DeviceSummary],
    collectors: &[bus::CollectorHealth],
    now: TimestampNs,
) -> String {
    let body = format!(
        r#"<h1>Devices</h1><div data-refresh="/fragments/devices">{table}</div><h2>Collectors</h2><div data-refresh="/fragments/collectors">{collectors}</div>"#,
        table = device_table(devices, now),
        collectors = collector_table(collectors, now),
    );
    page("Devices", &body)
}

/// The collectors' latest health summaries (heard on the bus's fleet channel), one row
/// each: what a collector collects, how much of it is synced, and when it last spoke.
pub fn collector_table(collectors: &[bus::CollectorHealth], now: TimestampNs) -> String {
    if collectors.is_empty() {
        return r#"<p class="summary" id="collectors">No collector heard in the last 5 minutes (collectors down, or live updates paused).</p>"#.to_owned();
    }
    let mut html = String::from(
        r#"<table id="collectors"><thead><tr><th>Collector</th><th>Pool</th><th>Devices</th><th>Synced</th><th>Degraded</th><th>Unreachable</th><th>Samples written</th><th>Reported</th></tr></thead><tbody>"#,
    );
    for c in collectors {
        let _ = write!(
            html,
            r#"<tr data-collector="{name}"><td>{name}</td><td>{pool}</td><td>{devices}</td><td>{synced}</td><td>{degraded}</td><td class="{unreachable_class}">{unreachable}</td><td>{written}</td><td>{age}</td></tr>"#,
            name = escape(&c.collector),
            pool = escape(if c.pool.is_empty() { "-" } else { &c.pool }),
            devices = c.devices,
            synced = c.synced,
            degraded = c.degraded,
            unreachable = c.unreachable,
            unreachable_class = if c.unreachable > 0 { "error" } else { "" },
            written = c.samples_written,
            age = age(Some(c.ts), now),
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// Interfaces of a device that have octet counters, from its series list.
pub fn interfaces(series: &[SeriesSummary]) -> Vec<String> {
    let mut names: Vec<String> = series
        .iter()
        .filter(|s| s.path.leaf() == "in-octets")
        .filter_map(|s| s.path.key("interface", "name").map(str::to_owned))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn counter_path(interface: &str, leaf: &str) -> Path {
    use model::PathElem;
    Path::from_elems(vec![
        PathElem::new("interfaces"),
        PathElem::new("interface").with_key("name", interface),
        PathElem::new("state"),
        PathElem::new("counters"),
        PathElem::new(leaf),
    ])
}

/// The element id of an interface's chart.
pub fn chart_id(interface: &str) -> String {
    let safe: String = interface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("chart-{safe}")
}

/// In/out bits-per-second chart of every interface of a device over `[from, to]`.
pub async fn charts(
    store: &dyn Store,
    device: &DeviceKey,
    interfaces: &[String],
    from: TimestampNs,
    to: TimestampNs,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(interfaces.len());
    for interface in interfaces {
        // One extra minute before the window so the first rate inside it exists.
        let lead = 60_000_000_000;
        let inp = store
            .range(
                device,
                &counter_path(interface, "in-octets"),
                from - lead,
                to,
            )
            .await?;
        let outp = store
            .range(
                device,
                &counter_path(interface, "out-octets"),
                from - lead,
                to,
            )
            .await?;
        let lines = [
            Line {
                label: "in".into(),
                class: "in",
                points: chart::bit_rate(&inp),
            },
            Line {
                label: "out".into(),
                class: "out",
                points: chart::bit_rate(&outp),
            },
        ];
        let svg = chart::render(&chart_id(interface), interface, &lines, from, to);
        out.push((interface.clone(), svg));
    }
    Ok(out)
}

/// `/devices/{name}`: charts per interface and the latest value of every leaf.
pub fn device_page(
    device: &DeviceSummary,
    series: &[SeriesSummary],
    charts: &[(String, String)],
    window_minutes: i64,
    now: TimestampNs,
) -> String {
    let name = escape(device.name.as_str());
    let mut body = format!(
        r#"<h1>{name} <span id="state">{badge}</span></h1>
<p class="meta" data-device="{name}">Address {addr} · <span id="freshness">last update {age}</span> · <span id="live" class="live-status">connecting…</span></p>"#,
        badge = state_badge(device.state),
        addr = escape(&device.address),
        age = age(device.last_sample, now),
    );
    let _ = write!(
        body,
        r#"<p class="meta health" id="health">{}</p>"#,
        health_line(device, now)
    );
    if let Some(err) = &device.last_error {
        let _ = write!(
            body,
            r#"<p class="error" id="last-error">{}</p>"#,
            escape(err)
        );
    }
    let _ = write!(
        body,
        r#"<h2>Traffic, last {window_minutes} minutes</h2><div class="charts">"#
    );
    for (interface, svg) in charts {
        let _ = write!(
            body,
            r#"<figure data-interface="{i}"><figcaption>{i}</figcaption>{svg}</figure>"#,
            i = escape(interface)
        );
    }
    if charts.is_empty() {
        body.push_str("<p>No interface counters received yet.</p>");
    }
    let _ = write!(
        body,
        r#"</div><h2>Latest values</h2><table><thead><tr><th>Path</th><th>Value</th><th>Updated</th></tr></thead><tbody id="latest">{}</tbody></table>"#,
        latest_rows(series, now)
    );
    page(device.name.as_str(), &body)
}

/// Longest value text the latest-values table shows; bytes and `Any` can be large.
const MAX_VALUE_CHARS: usize = 120;

/// A value as the latest-values table shows it: its display form (exact decimals, hex
/// bytes, `[a, b]` leaf-lists, `Any` as type and size, `deleted`), cut to
/// 120 characters with an ellipsis.
pub fn display_value(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Rows of the latest-values table (also sent alone by live updates).
pub fn latest_rows(series: &[SeriesSummary], now: TimestampNs) -> String {
    let mut rows = String::new();
    for s in series {
        let _ = write!(
            rows,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&s.path.to_string()),
            escape(&display_value(&s.last_value)),
            age(Some(s.last_ts), now)
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        let s = 1_000_000_000;
        assert_eq!(age(None, 0), "never");
        assert_eq!(age(Some(0), 5 * s), "5s ago");
        assert_eq!(age(Some(0), 125 * s), "2m ago");
        assert_eq!(age(Some(0), 7200 * s), "2h ago");
    }

    #[test]
    fn every_value_kind_displays_readably() {
        for (value, shown) in [
            (Value::Uint(7), "7".to_owned()),
            (
                Value::Decimal {
                    digits: 1250,
                    precision: 2,
                },
                "12.50".to_owned(),
            ),
            (Value::Bytes(vec![0xde, 0xad]), "0xdead".to_owned()),
            (
                Value::LeafList(vec![Value::String("a".into()), Value::Uint(2)]),
                "[a, 2]".to_owned(),
            ),
            (
                Value::Any {
                    type_url: "type.googleapis.com/x.Y".into(),
                    value: vec![0; 4],
                },
                "type.googleapis.com/x.Y (4 bytes)".to_owned(),
            ),
            (Value::Deleted, "deleted".to_owned()),
            (
                Value::Bytes(vec![0xab; 100]),
                format!("0x{}…", "ab".repeat(59)),
            ),
        ] {
            assert_eq!(display_value(&value), shown, "{value:?}");
        }
    }

    #[test]
    fn chart_ids_are_safe_for_html() {
        assert_eq!(chart_id("Ethernet1/1"), "chart-Ethernet1-1");
    }
}
