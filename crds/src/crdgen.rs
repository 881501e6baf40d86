//! The CustomResourceDefinition YAML generated from the types, and the check that the
//! committed copy (`charts/netpulse/crds/`) has not drifted from it.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::Serialize;

use crate::{CollectorPool, Device};

/// A CRD file: its name and the generator of its content.
type CrdFile = (&'static str, fn() -> CustomResourceDefinition);

/// The command that regenerates the committed CRDs.
pub const REGENERATE_HINT: &str = "run `netpulse crdgen --out-dir charts/netpulse/crds` \
     (or `NETPULSE_UPDATE_CRDS=1 cargo test -p crds`)";

const HEADER: &str =
    "# Generated from the netpulse `crds` crate by `netpulse crdgen`. Do not edit.\n";

/// Each CRD's file name and generator, sorted by file name. A file name is the CRD's name
/// plus `.yaml` (checked by a test).
const CRDS: [CrdFile; 2] = [
    ("collectorpools.netpulse.io.yaml", CollectorPool::crd),
    ("devices.netpulse.io.yaml", Device::crd),
];

/// Every CRD as `(file name, YAML)`, e.g. `("devices.netpulse.io.yaml", "...")`, sorted by
/// file name.
pub fn crds() -> Vec<(&'static str, String)> {
    CRDS.iter()
        .map(|(name, crd)| (*name, to_yaml(&crd())))
        .collect()
}

fn to_yaml(value: &impl Serialize) -> String {
    // A CRD is plain data (strings, numbers, lists, maps with string keys): it always
    // serialises.
    let yaml = serde_yaml::to_string(value).unwrap_or_default();
    format!("{HEADER}{yaml}")
}

/// Writes every CRD into `dir` (created if missing), one file each. Files in `dir` that are
/// not CRDs of this crate are left alone; [`check_crds`] reports them.
pub fn write_crds(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, yaml) in crds() {
        std::fs::write(dir.join(name), yaml)?;
    }
    Ok(())
}

/// Compares `dir` with the generated CRDs: every CRD must be present with the same bytes, and
/// nothing else may be there.
pub fn check_crds(dir: &Path) -> Result<(), CrdDrift> {
    let expected = crds();
    let mut problems = Vec::new();
    let mut present = BTreeSet::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                match entry {
                    Ok(entry) => {
                        present.insert(entry.file_name().to_string_lossy().into_owned());
                    }
                    Err(e) => problems.push(DriftProblem::Unreadable {
                        file: dir.display().to_string(),
                        error: e.to_string(),
                    }),
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => problems.push(DriftProblem::Unreadable {
            file: dir.display().to_string(),
            error: e.to_string(),
        }),
    }
    for (name, yaml) in &expected {
        if !present.contains(*name) {
            problems.push(DriftProblem::Missing {
                file: (*name).to_owned(),
            });
            continue;
        }
        match std::fs::read_to_string(dir.join(name)) {
            Ok(actual) if actual == *yaml => {}
            Ok(actual) => problems.push(DriftProblem::Different {
                file: (*name).to_owned(),
                line: first_difference(&actual, yaml),
            }),
            Err(e) => problems.push(DriftProblem::Unreadable {
                file: (*name).to_owned(),
                error: e.to_string(),
            }),
        }
    }
    for name in &present {
        if !expected.iter().any(|(n, _)| n == name) {
            problems.push(DriftProblem::Extra { file: name.clone() });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CrdDrift {
            dir: dir.to_owned(),
            problems,
        })
    }
}

/// 1-based number of the first line where `actual` departs from `expected`.
fn first_difference(actual: &str, expected: &str) -> usize {
    let mut a = actual.lines();
    let mut e = expected.lines();
    let mut line = 1;
    loop {
        match (a.next(), e.next()) {
            (Some(x), Some(y)) if x == y => line += 1,
            _ => return line,
        }
    }
}

/// The committed CRD YAML differs from what the types generate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CrdDrift {
    /// The directory checked.
    pub dir: PathBuf,
    /// Each difference.
    pub problems: Vec<DriftProblem>,
}

impl fmt::Display for CrdDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "CRDs in {} do not match the crds crate:",
            self.dir.display()
        )?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        write!(f, "{REGENERATE_HINT}")
    }
}

/// One difference between the committed and the generated CRDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftProblem {
    /// A CRD file is not there.
    Missing {
        /// File name.
        file: String,
    },
    /// A CRD file is there with other content.
    Different {
        /// File name.
        file: String,
        /// First line that differs, counting from 1.
        line: usize,
    },
    /// A file that is not a generated CRD is there.
    Extra {
        /// File name.
        file: String,
    },
    /// A file or the directory could not be read.
    Unreadable {
        /// File or directory.
        file: String,
        /// The IO error.
        error: String,
    },
}

impl fmt::Display for DriftProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { file } => write!(f, "missing: {file}"),
            Self::Different { file, line } => {
                write!(f, "different: {file} (from line {line})")
            }
            Self::Extra { file } => write!(f, "extra: {file} (not generated; delete it)"),
            Self::Unreadable { file, error } => write!(f, "unreadable: {file}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/netpulse/crds");

    #[test]
    fn committed_crds_match_the_types() {
        let dir = Path::new(COMMITTED);
        if std::env::var_os("NETPULSE_UPDATE_CRDS").is_some() {
            write_crds(dir).unwrap();
        }
        if let Err(drift) = check_crds(dir) {
            panic!("{drift}");
        }
    }

    #[test]
    fn every_crd_is_named_after_its_resource() {
        let names: Vec<_> = CRDS.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "collectorpools.netpulse.io.yaml",
                "devices.netpulse.io.yaml"
            ]
        );
        for (name, crd) in CRDS {
            let crd = crd();
            let crd_name = crd.metadata.name.as_deref().unwrap();
            assert_eq!(name, format!("{crd_name}.yaml"));
        }
        for (name, yaml) in crds() {
            assert!(yaml.starts_with(HEADER), "{name}");
            assert!(yaml.contains("kind: CustomResourceDefinition"), "{name}");
        }
    }

    #[test]
    fn drift_is_detected_and_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("crds");
        write_crds(&dir).unwrap();
        assert_eq!(check_crds(&dir), Ok(()));

        let device = dir.join("devices.netpulse.io.yaml");
        let text = std::fs::read_to_string(&device).unwrap();
        std::fs::write(
            &device,
            text.replacen("maximum: 65535", "maximum: 65534", 1),
        )
        .unwrap();
        std::fs::remove_file(dir.join("collectorpools.netpulse.io.yaml")).unwrap();
        std::fs::write(
            dir.join("old.netpulse.io.yaml"),
            "kind: CustomResourceDefinition\n",
        )
        .unwrap();

        let drift = check_crds(&dir).unwrap_err();
        assert_eq!(drift.problems.len(), 3, "{drift}");
        assert!(matches!(
            &drift.problems[0],
            DriftProblem::Missing { file } if file == "collectorpools.netpulse.io.yaml"
        ));
        let DriftProblem::Different { file, line } = &drift.problems[1] else {
            panic!("{drift}");
        };
        assert_eq!(file, "devices.netpulse.io.yaml");
        let expected_line = text
            .lines()
            .position(|l| l.contains("maximum: 65535"))
            .unwrap()
            + 1;
        assert_eq!(*line, expected_line);
        assert!(matches!(
            &drift.problems[2],
            DriftProblem::Extra { file } if file == "old.netpulse.io.yaml"
        ));
        let message = drift.to_string();
        for needle in [
            "missing: collectorpools.netpulse.io.yaml",
            "different: devices.netpulse.io.yaml (from line",
            "extra: old.netpulse.io.yaml",
            "run `netpulse crdgen --out-dir charts/netpulse/crds`",
        ] {
            assert!(message.contains(needle), "{needle} not in\n{message}");
        }

        // Regenerating repairs everything but the extra file, which is not ours to delete.
        write_crds(&dir).unwrap();
        let drift = check_crds(&dir).unwrap_err();
        assert_eq!(
            drift.problems,
            [DriftProblem::Extra {
                file: "old.netpulse.io.yaml".into()
            }]
        );
        std::fs::remove_file(dir.join("old.netpulse.io.yaml")).unwrap();
        assert_eq!(check_crds(&dir), Ok(()));
    }

    #[test]
    fn a_missing_directory_reports_every_crd_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let drift = check_crds(&tmp.path().join("nope")).unwrap_err();
        assert_eq!(drift.problems.len(), 2);
        assert!(
            drift
                .problems
                .iter()
                .all(|p| matches!(p, DriftProblem::Missing { .. }))
        );
    }
}
