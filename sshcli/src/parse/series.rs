//! A parsed `show interfaces` table as canonical OpenConfig samples, on the same paths
//! and with the same value kinds as gNMI collection (and the simulator's gNMI target):
//! `/interfaces/interface[name=<if>]/state/{admin-status,oper-status}` as `UP`/`DOWN`
//! text and `/interfaces/interface[name=<if>]/state/counters/<leaf>` as unsigned
//! integers.

use std::sync::Arc;

use model::{DeviceKey, Path, PathElem, Sample, TimestampNs, Value};

use super::{Error, Field, Result, Row};
use crate::Platform;

/// Column holding the interface name.
pub const INTERFACE_COLUMN: &str = "INTERFACE";
/// Column holding the first status of `<if> is <status>, line protocol is <status>`:
/// `administratively down` means the interface is shut down.
pub const ADMIN_STATUS_COLUMN: &str = "LINK_STATUS";
/// Column holding the line protocol status, the operational status.
pub const OPER_STATUS_COLUMN: &str = "PROTOCOL_STATUS";

const UP: &str = "UP";
const DOWN: &str = "DOWN";

/// Counter leaves below `state/counters`, each with the column that holds it in the
/// project's templates. Columns a template lacks (ntc-templates' do not capture byte
/// counts) give no sample.
const COUNTERS: [(&str, &str); 6] = [
    ("in-octets", "INPUT_BYTES"),
    ("out-octets", "OUTPUT_BYTES"),
    ("in-pkts", "INPUT_PACKETS"),
    ("out-pkts", "OUTPUT_PACKETS"),
    ("in-errors", "INPUT_ERRORS"),
    ("out-errors", "OUTPUT_ERRORS"),
];

/// Interface name abbreviations as CLIs print them (LLDP tables, `show ip int brief`)
/// and their full names. Longest first, so `Twe` is tried before `Tw`.
const ABBREVIATIONS: [(&str, &str); 17] = [
    ("Twe", "TwentyFiveGigE"),
    ("Gi", "GigabitEthernet"),
    ("Te", "TenGigabitEthernet"),
    ("Fa", "FastEthernet"),
    ("Fo", "FortyGigabitEthernet"),
    ("Hu", "HundredGigE"),
    ("Tw", "TwoGigabitEthernet"),
    ("Et", "Ethernet"),
    ("Eth", "Ethernet"),
    ("Ma", "Management"),
    ("Mgmt", "Management"),
    ("Lo", "Loopback"),
    ("Vl", "Vlan"),
    ("Tu", "Tunnel"),
    ("Se", "Serial"),
    ("Po", "Port-channel"),
    ("Vx", "Vxlan"),
];

/// The full name of an interface printed in short form: `Gi0/1` → `GigabitEthernet0/1`
/// and, on Arista, `Et1` → `Ethernet1`, `Po10` → `Port-Channel10` (Arista's spelling).
/// Names that are already full, or not interface names, are returned unchanged.
pub fn expand_interface_name(platform: Platform, name: &str) -> String {
    let split = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (prefix, rest) = name.split_at(split);
    if rest.is_empty() {
        return name.to_owned();
    }
    let full = ABBREVIATIONS
        .iter()
        .find(|(short, _)| *short == prefix)
        .map(|(_, full)| *full);
    match (full, platform) {
        (Some("Port-channel"), Platform::AristaEos) => format!("Port-Channel{rest}"),
        (Some(full), _) => format!("{full}{rest}"),
        (None, _) => name.to_owned(),
    }
}

/// Samples for every interface of a parsed `show interfaces` table, stamped `ts` (the
/// poll time, ns): admin-status, oper-status, then the counters, per interface in table
/// order. Rows without an interface name, and counter columns that are missing or
/// empty, give no sample; a counter that is not a number is an error.
pub fn interface_samples(
    device: &DeviceKey,
    platform: Platform,
    rows: &[Row],
    ts: TimestampNs,
) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for row in rows {
        let Some(name) = text(row, INTERFACE_COLUMN).filter(|n| !n.is_empty()) else {
            continue;
        };
        let name = expand_interface_name(platform, name);
        let mut push = |leaf: &[&str], value: Value| {
            samples.push(Sample {
                device: device.clone(),
                path: Arc::new(interface_path(&name, leaf)),
                ts,
                value,
            });
        };
        if let Some(status) = text(row, ADMIN_STATUS_COLUMN).filter(|s| !s.is_empty()) {
            push(
                &["admin-status"],
                Value::String(admin_status(status).into()),
            );
        }
        if let Some(status) = text(row, OPER_STATUS_COLUMN).filter(|s| !s.is_empty()) {
            push(&["oper-status"], Value::String(oper_status(status).into()));
        }
        for (leaf, column) in COUNTERS {
            let Some(raw) = text(row, column).map(str::trim).filter(|s| !s.is_empty()) else {
                continue;
            };
            let count = raw.parse::<u64>().map_err(|_| Error::Counter {
                interface: name.clone(),
                column: column.to_owned(),
                value: raw.to_owned(),
            })?;
            push(&["counters", leaf], Value::Uint(count));
        }
    }
    Ok(samples)
}

/// `/interfaces/interface[name=<name>]/state/<leaf...>`, built as the gNMI side builds
/// paths.
fn interface_path(name: &str, leaf: &[&str]) -> Path {
    let mut elems = vec![
        PathElem::new("interfaces"),
        PathElem::new("interface").with_key("name", name),
        PathElem::new("state"),
    ];
    elems.extend(leaf.iter().map(|l| PathElem::new(*l)));
    Path::from_elems(elems)
}

fn text<'a>(row: &'a Row, column: &str) -> Option<&'a str> {
    row.get(column).and_then(Field::as_text)
}

/// OpenConfig admin-status of `<if> is <status>`.
fn admin_status(status: &str) -> &'static str {
    if status.contains("administratively") || status.contains("disabled") {
        DOWN
    } else {
        UP
    }
}

/// OpenConfig oper-status of `line protocol is <status>`: `UP` or `DOWN` only, the two
/// values the gNMI side reports, so both transports give the same series (`notpresent`,
/// `down (disabled)` and the like are `DOWN`).
fn oper_status(status: &str) -> &'static str {
    match status.split_whitespace().next() {
        Some(word) if word.eq_ignore_ascii_case("up") => UP,
        _ => DOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_interface_names_expand() {
        let cases = [
            (Platform::CiscoIos, "Gi0/1", "GigabitEthernet0/1"),
            (Platform::CiscoIos, "Te1/0/48", "TenGigabitEthernet1/0/48"),
            (Platform::CiscoIos, "Twe1/0/1", "TwentyFiveGigE1/0/1"),
            (Platform::CiscoIos, "Po10", "Port-channel10"),
            (Platform::AristaEos, "Po10", "Port-Channel10"),
            (Platform::AristaEos, "Et1", "Ethernet1"),
            (Platform::AristaEos, "Et49/1", "Ethernet49/1"),
            (Platform::AristaEos, "Ma1", "Management1"),
            (Platform::AristaEos, "Ethernet1", "Ethernet1"),
            (
                Platform::CiscoIos,
                "GigabitEthernet0/1",
                "GigabitEthernet0/1",
            ),
            (Platform::CiscoIos, "5254.00ab.cdef", "5254.00ab.cdef"),
            (Platform::CiscoIos, "Gi", "Gi"),
            (Platform::CiscoIos, "Xy0/1", "Xy0/1"),
        ];
        for (platform, short, full) in cases {
            assert_eq!(expand_interface_name(platform, short), full, "{short}");
        }
    }

    #[test]
    fn statuses_map_to_openconfig() {
        assert_eq!(admin_status("up"), UP);
        assert_eq!(admin_status("down"), UP);
        assert_eq!(admin_status("administratively down"), DOWN);
        assert_eq!(oper_status("up"), UP);
        assert_eq!(oper_status("up (connected)"), UP);
        assert_eq!(oper_status("down"), DOWN);
        assert_eq!(oper_status("notpresent"), DOWN);
        assert_eq!(oper_status("lowerlayerdown"), DOWN);
    }

    fn row(fields: &[(&str, &str)]) -> Row {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Field::Text((*v).to_owned())))
            .collect()
    }

    #[test]
    fn missing_columns_give_no_sample_and_bad_counters_an_error() {
        let device = DeviceKey::new("r1").unwrap();
        let rows = [
            row(&[
                ("INTERFACE", "Gi0/1"),
                ("INPUT_PACKETS", "7"),
                ("INPUT_BYTES", ""),
            ]),
            row(&[("INTERFACE", ""), ("INPUT_PACKETS", "9")]),
        ];
        let samples = interface_samples(&device, Platform::CiscoIos, &rows, 5).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(
            samples[0].path.to_string(),
            "/interfaces/interface[name=GigabitEthernet0/1]/state/counters/in-pkts"
        );
        assert_eq!(samples[0].value, Value::Uint(7));
        assert_eq!(samples[0].ts, 5);

        let bad = [row(&[("INTERFACE", "Et1"), ("OUTPUT_ERRORS", "lots")])];
        let err = interface_samples(&device, Platform::AristaEos, &bad, 0).unwrap_err();
        assert!(
            matches!(&err, Error::Counter { interface, column, .. }
                if interface == "Ethernet1" && column == "OUTPUT_ERRORS"),
            "{err:?}"
        );
    }
}
