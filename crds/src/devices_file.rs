//! The devices file of single-node mode: Device specs without Kubernetes.
//!
//! ```yaml
//! devices:
//!   - name: sim-0001
//!     spec: { address: 127.0.1.1, gnmi: { port: 57400, insecure: true } }
//! ```
//!
//! `spec` is exactly a Device's `spec`, so a device moves between the file and a cluster
//! unchanged. Every problem is reported with the file, the device (name and position) and
//! the field, and all problems are reported at once.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use model::DeviceKey;
use serde::{Deserialize, Serialize};

use crate::device::DeviceSpec;

/// One device of the devices file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// Device name, with the rules of a Kubernetes object name.
    pub name: DeviceKey,
    /// The same spec as a `Device` resource's.
    pub spec: DeviceSpec,
}

/// Why a devices file was refused.
#[derive(Debug, thiserror::Error)]
pub enum DevicesFileError {
    /// The file could not be read.
    #[error("{}: cannot read the devices file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{}: not valid YAML: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The YAML is not a mapping with a `devices` list.
    #[error("{}: {message}", file.display())]
    Shape {
        /// The file.
        file: PathBuf,
        /// What is wrong with the top level.
        message: String,
    },
    /// One or more devices are invalid; every problem is listed, one per line.
    #[error("{}", Problems { file, problems })]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Each problem found.
        problems: Vec<EntryProblem>,
    },
}

/// One problem with one device of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    /// Position of the device in the `devices` list, counting from 1.
    pub entry: usize,
    /// The device's name, when it has one (even an invalid one).
    pub name: Option<String>,
    /// Path of the field within the entry: `spec.gnmi.port`, `name`; empty for the entry.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "device {name:?} (entry {})", self.entry)?,
            None => write!(f, "device at entry {}", self.entry)?,
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

struct Problems<'a> {
    file: &'a Path,
    problems: &'a [EntryProblem],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {problem}", self.file.display())?;
        }
        Ok(())
    }
}

/// The top level of the file, with entries kept raw so each can fail on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    devices: Vec<serde_yaml::Value>,
}

#[derive(Serialize)]
struct FileRef<'a> {
    devices: &'a [DeviceEntry],
}

/// Reads and parses the devices file at `file`.
pub fn load(file: &Path) -> Result<Vec<DeviceEntry>, DevicesFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| DevicesFileError::Read {
        file: file.to_owned(),
        source,
    })?;
    parse(file, &text)
}

/// Parses the text of a devices file; `file` is only used in messages.
pub fn parse(file: &Path, text: &str) -> Result<Vec<DeviceEntry>, DevicesFileError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| DevicesFileError::Syntax {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
    if !value.is_mapping() {
        return Err(DevicesFileError::Shape {
            file: file.to_owned(),
            message: "expected a mapping with a `devices` list at the top level".to_owned(),
        });
    }
    let raw: RawFile = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        DevicesFileError::Shape {
            file: file.to_owned(),
            message: if path == "." {
                message
            } else {
                format!("{path}: {message}")
            },
        }
    })?;

    let mut entries = Vec::with_capacity(raw.devices.len());
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, value) in raw.devices.into_iter().enumerate() {
        let entry = index + 1;
        let name = value
            .get("name")
            .and_then(serde_yaml::Value::as_str)
            .map(str::to_owned);
        let problem = |field: String, message: String| EntryProblem {
            entry,
            name: name.clone(),
            field,
            message,
        };
        if let Some(name) = &name {
            if let Some(first) = seen.get(name) {
                problems.push(problem(
                    "name".to_owned(),
                    format!("duplicate device name, first used by entry {first}"),
                ));
            } else {
                seen.insert(name.clone(), entry);
            }
        }
        match serde_path_to_error::deserialize::<_, DeviceEntry>(value) {
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." { String::new() } else { path };
                problems.push(problem(field, e.into_inner().to_string()));
            }
            Ok(device) => match device.spec.validate() {
                Err(errors) => problems.extend(
                    errors
                        .into_iter()
                        .map(|e| problem(format!("spec.{}", e.field), e.message)),
                ),
                Ok(()) => entries.push(device),
            },
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(DevicesFileError::Invalid {
            file: file.to_owned(),
            problems,
        })
    }
}

/// Writes `entries` as a devices file that [`parse`] reads back unchanged.
pub fn render(entries: &[DeviceEntry]) -> String {
    // Serialising plain data (strings, numbers, lists, maps with string keys) cannot fail.
    serde_yaml::to_string(&FileRef { devices: entries }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "devices.yaml";

    fn parse_err(text: &str) -> String {
        parse(Path::new(FILE), text)
            .expect_err("should be refused")
            .to_string()
    }

    const GOOD: &str = "
devices:
  - name: leaf1
    spec:
      address: 127.0.1.1
      gnmi: { port: 57400, insecure: true }
  - name: leaf2
    spec:
      address: 127.0.1.2
      gnmi:
        insecure: true
        subscriptions:
          - path: /interfaces/interface[name=Ethernet1]/state/counters
            sampleInterval: 1s
          - path: /system/state
            mode: on_change
            heartbeatInterval: 1m
";

    #[test]
    fn a_good_file_parses_with_defaults_filled_in() {
        let entries = parse(Path::new(FILE), GOOD).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name.as_str(), "leaf1");
        assert_eq!(entries[0].spec.gnmi.port, 57400);
        assert_eq!(
            entries[0].spec.gnmi.subscriptions,
            crate::device::default_subscriptions()
        );
        let subs = &entries[1].spec.gnmi.subscriptions;
        assert_eq!(subs[1].mode, crate::SubscriptionMode::OnChange);
        assert_eq!(subs[1].heartbeat_interval.as_deref(), Some("1m"));
    }

    #[test]
    fn render_round_trips() {
        let entries = parse(Path::new(FILE), GOOD).unwrap();
        let text = render(&entries);
        assert_eq!(parse(Path::new(FILE), &text).unwrap(), entries);
        assert_eq!(parse(Path::new(FILE), &render(&[])).unwrap(), vec![]);
    }

    #[test]
    fn bad_files_are_refused_naming_file_device_and_field() {
        let device =
            |name: &str, spec: &str| format!("devices:\n  - name: {name}\n    spec: {spec}\n");
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "unknown field",
                device("leaf1", "{ adress: 10.0.0.1 }"),
                "devices.yaml: device \"leaf1\" (entry 1): spec.adress: unknown field `adress`, expected one of `address`, `pool`",
            ),
            (
                "unknown nested field",
                device("leaf1", "{ address: 10.0.0.1, gnmi: { prot: 1 } }"),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.prot: unknown field `prot`",
            ),
            (
                "bad address",
                device("leaf1", "{ address: '10.0.0.1:57400' }"),
                "devices.yaml: device \"leaf1\" (entry 1): spec.address: invalid address \"10.0.0.1:57400\": must not include a port",
            ),
            (
                "missing required field",
                device("leaf1", "{ gnmi: { port: 57400 } }"),
                "devices.yaml: device \"leaf1\" (entry 1): spec: missing field `address`",
            ),
            (
                "missing spec",
                "devices:\n  - name: leaf1\n".to_owned(),
                "devices.yaml: device \"leaf1\" (entry 1): missing field `spec`",
            ),
            (
                "bad port",
                device("leaf3", "{ address: 10.0.0.3, gnmi: { port: 70000 } }"),
                "devices.yaml: device \"leaf3\" (entry 1): spec.gnmi.port: invalid value 70000, expected 1..=65535",
            ),
            (
                "zero port",
                device("leaf3", "{ address: 10.0.0.3, ssh: { port: 0, commands: [] } }"),
                "devices.yaml: device \"leaf3\" (entry 1): spec.ssh.port: invalid value 0, expected 1..=65535",
            ),
            (
                "bad duration",
                device(
                    "leaf1",
                    "{ address: 10.0.0.1, gnmi: { subscriptions: [ { path: /a, sampleInterval: 10sec } ] } }",
                ),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.subscriptions[0].sampleInterval: invalid duration \"10sec\": unknown unit",
            ),
            (
                "interval out of bounds",
                device(
                    "leaf1",
                    "{ address: 10.0.0.1, gnmi: { subscriptions: [ { path: /a, sampleInterval: 10ms } ] } }",
                ),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.subscriptions[0].sampleInterval: invalid interval \"10ms\": must be between 100ms and 24h",
            ),
            (
                "bad path",
                device(
                    "leaf1",
                    "{ address: 10.0.0.1, gnmi: { subscriptions: [ { path: '/a[name=x' } ] } }",
                ),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.subscriptions[0].path: invalid path \"/a[name=x\" at byte 9: unterminated key value",
            ),
            (
                "bad mode",
                device(
                    "leaf1",
                    "{ address: 10.0.0.1, gnmi: { subscriptions: [ { path: /a, mode: poll } ] } }",
                ),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.subscriptions[0].mode: unknown variant `poll`, expected one of `sample`, `on_change`, `target_defined`",
            ),
            (
                "empty subscriptions",
                device("leaf1", "{ address: 10.0.0.1, gnmi: { subscriptions: [] } }"),
                "devices.yaml: device \"leaf1\" (entry 1): spec.gnmi.subscriptions: at least one subscription is required",
            ),
            (
                "duplicate name",
                "devices:\n  - { name: leaf1, spec: { address: 10.0.0.1 } }\n  - { name: leaf2, spec: { address: 10.0.0.2 } }\n  - { name: leaf1, spec: { address: 10.0.0.3 } }\n".to_owned(),
                "devices.yaml: device \"leaf1\" (entry 3): name: duplicate device name, first used by entry 1",
            ),
            (
                "invalid device name",
                device("Leaf_1", "{ address: 10.0.0.1 }"),
                "devices.yaml: device \"Leaf_1\" (entry 1): name: invalid device name \"Leaf_1\": may contain only lowercase letters",
            ),
            (
                "missing name",
                "devices:\n  - spec: { address: 10.0.0.1 }\n".to_owned(),
                "devices.yaml: device at entry 1: missing field `name`",
            ),
            (
                "entry is not a mapping",
                "devices:\n  - leaf1\n".to_owned(),
                "devices.yaml: device at entry 1: invalid type: string \"leaf1\", expected struct DeviceEntry",
            ),
            (
                "not YAML",
                "devices: [ { name: leaf1\n".to_owned(),
                "devices.yaml: not valid YAML: ",
            ),
            (
                "empty file",
                String::new(),
                "devices.yaml: expected a mapping with a `devices` list at the top level",
            ),
            (
                "unknown top-level field",
                "device: []\n".to_owned(),
                "devices.yaml: device: unknown field `device`, expected `devices`",
            ),
            (
                "devices is not a list",
                "devices: leaf1\n".to_owned(),
                "devices.yaml: devices: invalid type: string \"leaf1\", expected a sequence",
            ),
        ];
        for (case, text, expected) in cases {
            let err = parse_err(&text);
            assert!(
                err.starts_with(expected),
                "{case}:\n  got      {err}\n  expected {expected}..."
            );
        }
    }

    #[test]
    fn every_problem_is_reported_once_per_line() {
        let text = "
devices:
  - { name: leaf1, spec: { address: 10.0.0.1 } }
  - { name: leaf2, spec: { address: 'bad address', gnmi: { port: 0 } } }
  - { name: leaf3, spec: { address: 10.0.0.3, weight: 0 } }
";
        let err = parse(Path::new(FILE), text).unwrap_err();
        let DevicesFileError::Invalid { problems, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(problems.len(), 2, "{err}");
        let lines: Vec<String> = err.to_string().lines().map(str::to_owned).collect();
        assert_eq!(
            lines,
            [
                "devices.yaml: device \"leaf2\" (entry 2): spec.gnmi.port: invalid value 0, expected 1..=65535",
                "devices.yaml: device \"leaf3\" (entry 3): spec.weight: invalid value 0, expected 1..=10000",
            ]
        );
    }

    #[test]
    fn load_names_the_file_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let err = load(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        assert!(err.contains("cannot read the devices file"), "{err}");
        let present = dir.path().join("devices.yaml");
        std::fs::write(&present, GOOD).unwrap();
        assert_eq!(load(&present).unwrap().len(), 2);
    }
}
