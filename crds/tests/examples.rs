//! The files in `examples/`: valid manifests pass the Rust checks and the CRD's CEL rules,
//! the devices file loads, and each manifest in `examples/invalid/` is refused with the
//! message its `# expect:` (Rust) and `# expect-cel:` (API server CEL rules) lines name.

// Helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use crds::{CollectorPool, Device, devices_file};
use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde::de::DeserializeOwned;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Deserializes like the operator will (spec fields deny unknown names), then validates.
/// Errors are `field: message`, with fields from the manifest root (`spec.gnmi.port`).
fn check<K>(
    doc: serde_json::Value,
    validate: impl Fn(&K) -> Result<(), Vec<crds::FieldError>>,
) -> Result<(), Vec<String>>
where
    K: DeserializeOwned,
{
    let object: K = serde_path_to_error::deserialize(doc)
        .map_err(|e| vec![format!("{}: {}", e.path(), e.inner())])?;
    validate(&object).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("spec.{}: {}", e.field, e.message))
            .collect()
    })
}

fn rust_check(doc: &serde_json::Value) -> Result<(), Vec<String>> {
    match doc["kind"].as_str() {
        Some("Device") => check(doc.clone(), |d: &Device| d.spec.validate()),
        Some("CollectorPool") => check(doc.clone(), |p: &CollectorPool| p.spec.validate()),
        other => panic!("unexpected kind {other:?}"),
    }
}

fn cel_check(doc: &serde_json::Value) -> Result<(), Vec<String>> {
    let crd = match doc["kind"].as_str() {
        Some("Device") => Device::crd(),
        Some("CollectorPool") => CollectorPool::crd(),
        other => panic!("unexpected kind {other:?}"),
    };
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap(),
    )
    .unwrap();
    Validator::new()
        .validate(&schema, doc, None)
        .map_err(|errors| errors.into_vec().iter().map(ToString::to_string).collect())
}

fn read_doc(path: &Path) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_json::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
    (text, doc)
}

#[test]
fn valid_manifests_pass_rust_and_cel_checks() {
    let files: Vec<PathBuf> = yaml_files(Path::new(EXAMPLES))
        .into_iter()
        .filter(|p| !p.ends_with("devices.yaml"))
        .collect();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "collectorpool.yaml",
        "device-leaf1.yaml",
        "device-ssh-only.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    for file in files {
        let (_, doc) = read_doc(&file);
        assert_eq!(
            doc["apiVersion"],
            "netpulse.io/v1alpha1",
            "{}",
            file.display()
        );
        assert_eq!(rust_check(&doc), Ok(()), "{}", file.display());
        assert_eq!(cel_check(&doc), Ok(()), "{}", file.display());
    }
}

#[test]
fn the_example_devices_file_loads() {
    let entries = devices_file::load(&Path::new(EXAMPLES).join("devices.yaml")).unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.spec.address.as_str(), e.spec.gnmi.port))
        .collect();
    assert_eq!(
        summary,
        [
            ("sim-0001", "127.0.1.1", 57400),
            ("sim-0002", "127.0.1.2", 57400),
            ("sim-0003", "127.0.1.3", 57400),
        ]
    );
    assert!(entries.iter().all(|e| e.spec.gnmi.insecure));
}

#[test]
fn invalid_manifests_are_refused_with_the_expected_message() {
    let files = yaml_files(&Path::new(EXAMPLES).join("invalid"));
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let (text, doc) = read_doc(&file);
        let expect: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        let expect_cel: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect-cel: "))
            .collect();
        assert!(
            !expect.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );

        let errors = rust_check(&doc).expect_err(&file.display().to_string());
        for needle in expect {
            assert!(
                errors.iter().any(|e| e.starts_with(needle)),
                "{}: expected {needle:?} in {errors:#?}",
                file.display()
            );
        }
        if !expect_cel.is_empty() {
            let errors = cel_check(&doc).expect_err(&file.display().to_string());
            for needle in expect_cel {
                assert!(
                    errors.iter().any(|e| e.starts_with(needle)),
                    "{}: expected CEL {needle:?} in {errors:#?}",
                    file.display()
                );
            }
        }
    }
}
