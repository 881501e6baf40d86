//! The generated CRDs: names, columns, subresources, and the CEL rules evaluated client-side
//! (with schema defaults applied first, as the API server does).

// Helpers outside #[test] functions are not covered by clippy.toml's allow-unwrap-in-tests.
#![allow(clippy::unwrap_used)]

use crds::{CollectorPool, Device};
use kube::CustomResourceExt;
use kube::core::cel::{ErrorKind, Validator};
use serde_json::{Value, json};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("derived CRDs carry a schema"),
    )
    .unwrap()
}

/// Messages of the CEL rules `object` breaks. Panics on rules that do not compile or cannot be
/// evaluated, which would make the API server refuse the CRD or the object.
fn cel_failures<K: CustomResourceExt>(object: Value) -> Vec<String> {
    match Validator::new().validate(&schema::<K>(), &object, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                assert_eq!(e.kind, ErrorKind::ValidationFailure, "{e:?}");
                e.to_string()
            })
            .collect(),
    }
}

fn device(spec: Value) -> Value {
    json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "Device",
        "metadata": {"name": "leaf1", "namespace": "lab"},
        "spec": spec,
    })
}

fn pool(spec: Value) -> Value {
    let mut full = json!({
        "image": "netpulse:0.1.0",
        "redis": {"urlSecret": {"name": "redis"}},
        "database": {"urlSecret": {"name": "db"}},
    });
    if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), spec) {
        full.extend(extra);
    }
    json!({
        "apiVersion": "netpulse.io/v1alpha1",
        "kind": "CollectorPool",
        "metadata": {"name": "default", "namespace": "lab"},
        "spec": full,
    })
}

#[test]
fn names_columns_and_subresources() {
    let crd = Device::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("devices.netpulse.io"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec!["dev".into(), "npdev".into()])
    );
    assert_eq!(crd.spec.names.categories, Some(vec!["netpulse".into()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Address", ".spec.address"),
            ("Pool", ".spec.pool"),
            ("Collector", ".status.collector"),
            ("Phase", ".status.phase"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let sub = version.subresources.as_ref().unwrap();
    assert!(sub.status.is_some() && sub.scale.is_none());

    let crd = CollectorPool::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("collectorpools.netpulse.io")
    );
    assert_eq!(crd.spec.names.short_names, Some(vec!["cpool".into()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["netpulse".into()]));
    let version = &crd.spec.versions[0];
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Devices", "Phase", "Age"]);
    let scale = version
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.collectors.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn schema_carries_ranges_patterns_and_required_fields() {
    let s = schema::<Device>();
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], json!(["address"]));
    let port = &spec["properties"]["gnmi"]["properties"]["port"];
    assert_eq!(
        (port["minimum"].as_f64(), port["maximum"].as_f64()),
        (Some(1.0), Some(65535.0))
    );
    let ssh_port = &spec["properties"]["ssh"]["properties"]["port"];
    assert_eq!(ssh_port["minimum"].as_f64(), Some(1.0));
    assert_eq!(
        spec["properties"]["address"]["pattern"],
        crds::ADDRESS_PATTERN
    );
    let sub = &spec["properties"]["gnmi"]["properties"]["subscriptions"]["items"];
    assert_eq!(sub["required"], json!(["path"]));
    assert_eq!(
        sub["properties"]["sampleInterval"]["pattern"],
        crds::INTERVAL_PATTERN
    );
    assert_eq!(
        sub["properties"]["mode"]["enum"],
        json!(["sample", "on_change", "target_defined"])
    );
    let pool = schema::<CollectorPool>();
    assert_eq!(
        pool["properties"]["spec"]["required"],
        json!(["database", "image", "redis"])
    );
}

#[test]
fn a_minimal_device_passes_after_defaulting() {
    assert_eq!(
        cel_failures::<Device>(device(json!({"address": "10.0.0.1"}))),
        Vec::<String>::new()
    );
}

#[test]
fn every_device_rule_compiles_and_passes_on_a_full_spec() {
    let full = json!({
        "address": "leaf1.example.net",
        "pool": "default",
        "credentials": {"name": "creds", "usernameKey": "u", "passwordKey": "p"},
        "gnmi": {
            "port": 6030,
            "tls": {"caSecret": "ca", "clientCertSecret": "client", "serverName": "leaf1"},
            "encoding": "json_ietf",
            "mode": "poll",
            "pollInterval": "30s",
            "updatesOnly": true,
            "subscriptions": [
                {"path": "/a", "sampleInterval": "100ms", "heartbeatInterval": "24h", "suppressRedundant": true},
                {"path": "/b", "mode": "on_change", "heartbeatInterval": "1m"},
                {"path": "/c", "mode": "target_defined"},
            ],
        },
        "ssh": {
            "port": 2222,
            "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "commands": [{"command": "show version", "interval": "1h30m"}, {"command": "show clock"}],
        },
        "weight": 3,
    });
    assert_eq!(cel_failures::<Device>(device(full)), Vec::<String>::new());
}

#[test]
fn device_rules_refuse_what_the_schema_cannot_say() {
    let cases = [
        (
            json!({"address": "10.0.0.1", "gnmi": {"insecure": true, "tls": {"caSecret": "ca"}}}),
            "spec.gnmi: gnmi.insecure and gnmi.tls are mutually exclusive: insecure turns TLS off",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"subscriptions": []}}),
            "spec.gnmi: gnmi.subscriptions must not be empty while gnmi is enabled",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"enabled": false}}),
            "spec: nothing to collect: keep gnmi enabled or add an ssh block",
        ),
        (
            json!({"address": "10.0.0.1", "ssh": {"commands": [{"command": "show version"}]}}),
            "spec.ssh: ssh needs a way to verify the host key: set hostKey, knownHostsSecret or trustOnFirstUse: true",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"subscriptions": [{"path": "/a", "mode": "on_change", "sampleInterval": "1s"}]}}),
            "spec.gnmi.subscriptions[0]: sampleInterval applies only to mode sample",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"subscriptions": [{"path": "/a", "mode": "target_defined", "suppressRedundant": true}]}}),
            "spec.gnmi.subscriptions[0]: suppressRedundant applies only to mode sample",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"subscriptions": [{"path": "/a", "sampleInterval": "50ms"}]}}),
            "spec.gnmi.subscriptions[0].sampleInterval: must be between 100ms and 24h",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"subscriptions": [{"path": "/a", "heartbeatInterval": "24h1ms"}]}}),
            "spec.gnmi.subscriptions[0].heartbeatInterval: must be between 100ms and 24h",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"pollInterval": "10s"}}),
            "spec.gnmi: pollInterval applies only to mode poll or once",
        ),
        (
            json!({"address": "10.0.0.1", "gnmi": {"mode": "once", "pollInterval": "50ms"}}),
            "spec.gnmi.pollInterval: must be between 100ms and 24h",
        ),
        (
            json!({"address": "10.0.0.1", "ssh": {"trustOnFirstUse": true, "commands": [{"command": "x", "interval": "25h"}]}}),
            "spec.ssh.commands[0].interval: must be between 100ms and 24h",
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(
            cel_failures::<Device>(device(spec.clone())),
            [expected],
            "{spec}"
        );
    }
}

#[test]
fn pool_rules_refuse_what_the_schema_cannot_say() {
    assert_eq!(
        cel_failures::<CollectorPool>(pool(json!({}))),
        Vec::<String>::new()
    );
    let full = json!({
        "collectors": {"minReplicas": 2, "maxReplicas": 8, "devicesPerReplica": 400, "replicas": 8},
        "web": {"autoscaling": {"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}},
        "placement": {"maxLoadFactor": "1.1"},
        "retention": {"raw": "2d", "oneMinute": "30d", "oneHour": "8760h"},
    });
    assert_eq!(
        cel_failures::<CollectorPool>(pool(full)),
        Vec::<String>::new()
    );

    let cases = [
        (
            json!({"collectors": {"minReplicas": 5, "maxReplicas": 2}}),
            vec!["spec.collectors: collectors.minReplicas must not exceed collectors.maxReplicas"],
        ),
        (
            json!({"collectors": {"replicas": 11}}),
            vec!["spec.collectors: collectors.replicas must lie within minReplicas..maxReplicas"],
        ),
        (
            json!({"web": {"replicas": 2, "autoscaling": {"maxReplicas": 3}}}),
            vec!["spec.web: web.replicas and web.autoscaling are mutually exclusive"],
        ),
        (
            json!({"web": {"autoscaling": {"minReplicas": 4, "maxReplicas": 3}}}),
            vec!["spec.web.autoscaling: web.autoscaling.minReplicas must not exceed maxReplicas"],
        ),
        (
            json!({"placement": {"maxLoadFactor": "1"}}),
            vec!["spec.placement.maxLoadFactor: must be greater than 1 and at most 10"],
        ),
        (
            json!({"placement": {"maxLoadFactor": "10.5"}}),
            vec!["spec.placement.maxLoadFactor: must be greater than 1 and at most 10"],
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(
            cel_failures::<CollectorPool>(pool(spec.clone())),
            expected,
            "{spec}"
        );
    }
}

#[test]
fn rust_defaults_match_schema_defaults() {
    // The API server fills defaults from the schema; the devices file and the operator get
    // them from serde. Both must produce the same spec.
    let minimal = json!({"address": "10.0.0.1"});
    let from_serde: crds::DeviceSpec = serde_json::from_value(minimal).unwrap();
    let s = schema::<Device>();
    let gnmi_default = &s["properties"]["spec"]["properties"]["gnmi"]["default"];
    assert_eq!(
        &serde_json::to_value(&from_serde.gnmi).unwrap(),
        gnmi_default
    );

    let from_serde: crds::CollectorPoolSpec =
        serde_json::from_value(pool(json!({}))["spec"].clone()).unwrap();
    let s = schema::<CollectorPool>();
    let props = &s["properties"]["spec"]["properties"];
    for (field, value) in [
        (
            "collectors",
            serde_json::to_value(&from_serde.collectors).unwrap(),
        ),
        (
            "placement",
            serde_json::to_value(&from_serde.placement).unwrap(),
        ),
        (
            "retention",
            serde_json::to_value(&from_serde.retention).unwrap(),
        ),
        ("web", serde_json::to_value(&from_serde.web).unwrap()),
    ] {
        assert_eq!(&props[field]["default"], &value, "{field}");
    }
}
