//! Parsing of show-command output with TextFSM.
//!
//! - [`TemplateSet`]: TextFSM templates found through an `index` laid out like the
//!   `ntc-templates` one (columns `Template, Hostname, Platform, Command`; commands in the
//!   `sh[[ow]] ver[[sion]]` abbreviation notation; first matching row wins). The
//!   project's own templates (`sshcli/templates/`) are embedded in the binary as the
//!   default set; a directory such as an installed ntc-templates `templates/` can be put
//!   in front of them with [`TemplateSet::with_dir`].
//! - [`detect_platform`]: the platform of a device from its `show version` output.
//! - [`interface_samples`]: a parsed `show interfaces` table as the same canonical
//!   OpenConfig series gNMI collection produces.
//! - [`Snapshot`]: any other parsed table (version, LLDP neighbours) as a comparable
//!   value.
//!
//! Everything here is pure: no IO except reading a template directory, and no clock
//! (callers pass the poll time).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use textfsm_rs::TextFSM;

use crate::Platform;

mod detect;
mod index;
mod series;

pub use detect::detect_platform;
pub use series::{
    ADMIN_STATUS_COLUMN, INTERFACE_COLUMN, OPER_STATUS_COLUMN, expand_interface_name,
    interface_samples,
};

/// File name of the index in a template directory.
pub const INDEX_FILE: &str = "index";

/// Columns holding interface names, expanded to full names in a [`Snapshot`]
/// (`Gi0/1` → `GigabitEthernet0/1`).
pub const INTERFACE_NAME_COLUMNS: [&str; 2] = ["LOCAL_INTERFACE", "INTERFACE"];

/// The project's index, embedded.
const EMBEDDED_INDEX: &str = include_str!("../templates/index");

/// The project's templates, embedded: (file name as the index names it, text).
const EMBEDDED_TEMPLATES: [(&str, &str); 6] = [
    (
        "arista_eos_show_version.textfsm",
        include_str!("../templates/arista_eos_show_version.textfsm"),
    ),
    (
        "arista_eos_show_interfaces.textfsm",
        include_str!("../templates/arista_eos_show_interfaces.textfsm"),
    ),
    (
        "arista_eos_show_lldp_neighbors.textfsm",
        include_str!("../templates/arista_eos_show_lldp_neighbors.textfsm"),
    ),
    (
        "cisco_ios_show_version.textfsm",
        include_str!("../templates/cisco_ios_show_version.textfsm"),
    ),
    (
        "cisco_ios_show_interfaces.textfsm",
        include_str!("../templates/cisco_ios_show_interfaces.textfsm"),
    ),
    (
        "cisco_ios_show_lldp_neighbors.textfsm",
        include_str!("../templates/cisco_ios_show_lldp_neighbors.textfsm"),
    ),
];

/// Where the embedded set says its files come from, in error messages.
const EMBEDDED_ORIGIN: &str = "embedded templates";

/// Why show-command output could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template directory or one of its files could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An index file is malformed: missing header or column, a bad regex, or a row
    /// naming a template file that is not there.
    #[error("{origin}: index line {line}: {reason}")]
    Index {
        /// The template directory (or "embedded templates").
        origin: String,
        /// 1-based line of the index.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No index row matches the platform and command.
    #[error("no template for platform {platform:?} and command {command:?}")]
    NoTemplate {
        /// The platform asked for.
        platform: String,
        /// The command asked for.
        command: String,
    },
    /// A template does not compile; textfsm-rs's message carries the `line:column` when
    /// the template grammar is at fault, and the offending rule for a bad regex.
    #[error("invalid template {template}: {message}")]
    InvalidTemplate {
        /// Template file name.
        template: String,
        /// textfsm-rs's explanation.
        message: String,
    },
    /// The template rejected the output (an `Error` action fired) or the engine failed.
    #[error("cannot parse output with {template}: {message}")]
    Parse {
        /// Template file name.
        template: String,
        /// textfsm-rs's explanation.
        message: String,
    },
    /// A parsed field that must be a number is not one.
    #[error("interface {interface:?}: column {column} is not a counter: {value:?}")]
    Counter {
        /// Interface of the row.
        interface: String,
        /// Column name.
        column: String,
        /// The text found.
        value: String,
    },
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One value of a parsed row: TextFSM `List` values are lists, every other value text
/// (empty when the template did not capture it). Serialises as a JSON string or array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Field {
    /// A single captured value.
    Text(String),
    /// The values of a `List` value, in input order.
    List(Vec<String>),
}

impl Field {
    /// The text of a single value; `None` for lists.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Field::Text(s) => Some(s),
            Field::List(_) => None,
        }
    }
}

/// One parsed record, by value name (as the template spells it, `INTERFACE`).
pub type Row = BTreeMap<String, Field>;

/// A parsed table kept whole, so consecutive polls can be compared with `==` or
/// serialised and diffed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The command, whitespace-normalised, as the caller gave it.
    pub command: String,
    /// The platform name ([`Platform::as_str`]).
    pub platform: String,
    /// The rows, interface names expanded ([`INTERFACE_NAME_COLUMNS`]) and sorted, so
    /// the same device state always gives the same snapshot whatever order the device
    /// printed it in.
    pub rows: Vec<Row>,
}

/// One TextFSM template, compiled on first use (an ntc-templates directory holds
/// hundreds; most are never used, and a few may use features textfsm-rs lacks).
#[derive(Debug)]
pub struct Template {
    name: String,
    text: String,
    compiled: OnceLock<Result<TextFSM, String>>,
}

impl Template {
    /// A template from its file name and text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            compiled: OnceLock::new(),
        }
    }

    /// The file name, as the index names it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn compiled(&self) -> Result<&TextFSM> {
        self.compiled
            .get_or_init(|| TextFSM::from_string(&self.text).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| Error::InvalidTemplate {
                template: self.name.clone(),
                message: message.clone(),
            })
    }

    /// Compiles the template, reporting why it is invalid.
    pub fn check(&self) -> Result<()> {
        self.compiled().map(|_| ())
    }

    /// Parses command output into rows, in the order the template records them.
    pub fn parse(&self, output: &str) -> Result<Vec<Row>> {
        // A fresh engine per parse: TextFSM keeps its state and records in itself.
        let mut fsm = self.compiled()?.clone();
        let records = fsm.parse_string(output, None).map_err(|e| Error::Parse {
            template: self.name.clone(),
            message: e.to_string(),
        })?;
        Ok(records
            .into_iter()
            .map(|record| {
                record
                    .fields
                    .into_iter()
                    .map(|(name, value)| {
                        let field = match value {
                            textfsm_rs::Value::Single(s) => Field::Text(s),
                            textfsm_rs::Value::List(l) => Field::List(l),
                        };
                        (name, field)
                    })
                    .collect()
            })
            .collect())
    }
}

/// Templates and the index rows that select them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    rows: Vec<index::IndexRow>,
}

impl TemplateSet {
    /// The project's templates, compiled into the binary.
    pub fn embedded() -> Result<Self> {
        let files: HashMap<&str, &str> = EMBEDDED_TEMPLATES.into_iter().collect();
        let rows = index::parse_index(EMBEDDED_ORIGIN, EMBEDDED_INDEX, |name| {
            Ok(files.get(name).map(|text| (*text).to_owned()))
        })?;
        Ok(Self { rows })
    }

    /// The templates of a directory holding an `index` file and the `.textfsm` files it
    /// names (an ntc-templates `templates/` directory, for one).
    pub fn from_dir(dir: &FsPath) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&index_path).map_err(|source| Error::Io {
            path: index_path.clone(),
            source,
        })?;
        let rows = index::parse_index(&dir.display().to_string(), &text, |name| {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io { path, source }),
            }
        })?;
        Ok(Self { rows })
    }

    /// This set with `dir`'s templates in front: its index rows are tried first, so it
    /// overrides commands both know and extends the set with the others.
    pub fn with_dir(self, dir: &FsPath) -> Result<Self> {
        Ok(Self::from_dir(dir)?.then(self))
    }

    /// This set's rows followed by `fallback`'s.
    pub fn then(mut self, fallback: TemplateSet) -> Self {
        self.rows.extend(fallback.rows);
        self
    }

    /// The template of the first index row matching `platform` (an index platform name
    /// such as `cisco_ios`) and `command` (abbreviated or not: `sh int`, `show
    /// interfaces`). As in ntc-templates, a row's regexes must match at the start of
    /// the platform and command, not necessarily all of it.
    pub fn lookup(&self, platform: &str, command: &str) -> Result<&Template> {
        let command = normalise_command(command);
        self.rows
            .iter()
            .find(|row| row.matches(platform, &command))
            .map(|row| row.template.as_ref())
            .ok_or_else(|| Error::NoTemplate {
                platform: platform.to_owned(),
                command,
            })
    }

    /// Parses the output of `command` run on a `platform` device.
    pub fn parse(&self, platform: Platform, command: &str, output: &str) -> Result<Vec<Row>> {
        self.lookup(platform.as_str(), command)?.parse(output)
    }

    /// Parses the output of `command` into a [`Snapshot`].
    pub fn snapshot(&self, platform: Platform, command: &str, output: &str) -> Result<Snapshot> {
        let rows = self.parse(platform, command, output)?;
        Ok(Snapshot::new(platform, command, rows))
    }

    /// Compiles every template the index names, returning those that fail (an empty
    /// list when all compile). For start-up checks and for vetting a directory.
    pub fn check_all(&self) -> Vec<Error> {
        let mut seen = std::collections::HashSet::new();
        self.rows
            .iter()
            .filter(|row| seen.insert(Arc::as_ptr(&row.template)))
            .filter_map(|row| row.template.check().err())
            .collect()
    }
}

impl Snapshot {
    /// A snapshot of parsed rows: interface names expanded, rows sorted.
    pub fn new(platform: Platform, command: &str, mut rows: Vec<Row>) -> Self {
        for row in &mut rows {
            for column in INTERFACE_NAME_COLUMNS {
                if let Some(Field::Text(name)) = row.get_mut(column) {
                    *name = expand_interface_name(platform, name);
                }
            }
        }
        rows.sort();
        Self {
            command: normalise_command(command),
            platform: platform.as_str().to_owned(),
            rows,
        }
    }
}

/// `command` trimmed, with runs of whitespace made single spaces.
fn normalise_command(command: &str) -> String {
    command.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[(&str, &str)]) -> Row {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Field::Text((*v).to_owned())))
            .collect()
    }

    #[test]
    fn every_embedded_template_compiles() {
        let set = TemplateSet::embedded().unwrap();
        let failures: Vec<String> = set.check_all().iter().map(|e| e.to_string()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(set.rows.len(), EMBEDDED_TEMPLATES.len());
    }

    #[test]
    fn list_values_become_lists_and_missing_values_empty_text() {
        let template = Template::new(
            "t.textfsm",
            "Value NAME (\\S+)\nValue List ITEMS (\\d+)\nValue OTHER (x)\n\nStart\n  ^name ${NAME}\n  ^item ${ITEMS}\n  ^end -> Record\n",
        );
        let rows = template.parse("name a\nitem 1\nitem 2\nend\n").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["NAME"], Field::Text("a".into()));
        assert_eq!(rows[0]["ITEMS"], Field::List(vec!["1".into(), "2".into()]));
        assert_eq!(rows[0]["OTHER"], Field::Text(String::new()));
        assert_eq!(
            serde_json::to_value(&rows[0]).unwrap(),
            serde_json::json!({"NAME": "a", "ITEMS": ["1", "2"], "OTHER": ""})
        );
    }

    #[test]
    fn invalid_template_errors_name_the_template_and_position() {
        let template = Template::new(
            "broken.textfsm",
            "Value NAME (\\S+)\n\nStart\n  ^x ${NAME\n",
        );
        let err = template.check().unwrap_err();
        assert!(matches!(err, Error::InvalidTemplate { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("broken.textfsm"), "{text}");

        let grammar = Template::new("grammar.textfsm", "Value NAME (\\S+)\n\nNotAState ^x\n");
        let text = grammar.check().unwrap_err().to_string();
        assert!(text.contains("3:"), "line number expected in {text}");
    }

    #[test]
    fn error_action_is_a_parse_error() {
        let template = Template::new(
            "strict.textfsm",
            "Value A (\\d+)\n\nStart\n  ^${A} -> Record\n  ^.* -> Error \"unexpected\"\n",
        );
        assert_eq!(template.parse("1\n2\n").unwrap().len(), 2);
        let err = template.parse("1\nfoo\n").unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");
    }

    #[test]
    fn snapshots_expand_interface_names_and_sort_rows() {
        let rows = vec![
            row(&[("LOCAL_INTERFACE", "Gi0/2"), ("NEIGHBOR_NAME", "b")]),
            row(&[("LOCAL_INTERFACE", "Gi0/1"), ("NEIGHBOR_NAME", "a")]),
        ];
        let mut reversed = rows.clone();
        reversed.reverse();
        let a = Snapshot::new(Platform::CiscoIos, " sh  lldp nei ", rows);
        let b = Snapshot::new(Platform::CiscoIos, "sh lldp nei", reversed);
        assert_eq!(a, b);
        assert_eq!(a.command, "sh lldp nei");
        assert_eq!(a.platform, "cisco_ios");
        assert_eq!(
            a.rows[0]["LOCAL_INTERFACE"],
            Field::Text("GigabitEthernet0/1".into())
        );
    }
}
