//! The binary's refusals and one-shot subcommands: bad devices files, no cluster,
//! CRD printing, migrations.

mod common;

use common::command;

async fn output(args: &[&str]) -> (bool, String, String) {
    let out = command(args).output().await.expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_devices_files_are_refused_naming_file_device_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("n.db").display());
    let cases = [
        (
            "unknown-field.yaml",
            "devices:\n  - name: leaf1\n    spec:\n      address: 10.0.0.1\n      adress: 10.0.0.2\n",
            ["leaf1", "adress"],
        ),
        (
            "bad-address.yaml",
            "devices:\n  - name: leaf2\n    spec:\n      address: \"not an address!\"\n",
            ["leaf2", "address"],
        ),
        (
            "missing-field.yaml",
            "devices:\n  - name: leaf3\n    spec:\n      gnmi:\n        insecure: true\n",
            ["leaf3", "address"],
        ),
    ];
    for (file, text, [device, field]) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let (ok, _, stderr) = output(&[
            "collector",
            "--devices",
            path.to_str().unwrap(),
            "--database-url",
            &db,
            "--listen",
            "127.0.0.1:0",
        ])
        .await;
        assert!(!ok, "{file} was accepted");
        for needle in [file, device, field] {
            assert!(
                stderr.contains(needle),
                "{file}: {needle:?} not in: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn operator_without_a_cluster_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&["operator"]);
    cmd.env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT");
    let out = tokio::time::timeout(common::PATIENCE, cmd.output())
        .await
        .expect("operator exits")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Kubernetes"), "{stderr}");
}

#[tokio::test]
async fn crdgen_prints_both_custom_resource_definitions() {
    let (ok, stdout, stderr) = output(&["crdgen"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.matches("kind: CustomResourceDefinition").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("devices.netpulse.io"));
    assert!(stdout.contains("collectorpools.netpulse.io"));
}

#[tokio::test]
async fn migrate_applies_then_reports_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("m/n.db").display());
    let (ok, first, stderr) = output(&["migrate", "--database-url", &db]).await;
    assert!(ok, "{stderr}");
    assert!(!first.contains("(0 migrations applied now)"), "{first}");
    let (ok, second, _) = output(&["migrate", "--database-url", &db]).await;
    assert!(ok);
    assert!(second.contains("(0 migrations applied now)"), "{second}");
}

#[tokio::test]
async fn node_role_picks_the_role_in_containers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&[]);
    cmd.env("NODE_ROLE", "operator")
        .env("KUBECONFIG", dir.path().join("none"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST");
    let out = cmd.output().await.unwrap();
    // The operator role ran (and refused for lack of a cluster) rather than clap asking
    // for a subcommand.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Kubernetes"), "{stderr}");
}

#[tokio::test]
async fn a_zero_or_malformed_retention_is_refused_before_anything_starts() {
    for (value, says) in [("0s", "must be positive"), ("a week", "invalid duration")] {
        let (ok, _, stderr) = output(&[
            "collector",
            "--devices",
            "examples/devices.yaml",
            "--database-url",
            "sqlite::memory:",
            "--retention-raw",
            value,
        ])
        .await;
        assert!(!ok, "{value}");
        assert!(
            stderr.contains("--retention-raw") && stderr.contains(says),
            "{value}: {stderr}"
        );
    }
}
