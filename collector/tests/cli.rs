//! SSH/CLI collection against the netpulse simulator's SSH side (russh server with
//! EOS-like and IOS-like output): an SSH-only device gets the same OpenConfig series as
//! gNMI, its raw outputs are kept, its other parsed tables are stored as snapshots, and a
//! host key learned on first use is recorded, enforced and shown in the Device status,
//! and an enable secret answers `enable`; a collector with more devices than its login
//! caps polls them all.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use collector::CollectorConfig;
use common::*;
use crds::devices_file::DeviceEntry;
use crds::{DeviceSpec, SecretRef, SshCommand, SshMode, SshSpec};
use model::DeviceKey;
use simulator::{Fleet, FleetConfig, SshConfig};
use tokio_util::sync::CancellationToken;

async fn fleet(base: &str, seed: u64) -> Fleet {
    Fleet::start(FleetConfig {
        devices: 2,
        base_address: base.parse().unwrap(),
        port: 0,
        interfaces: 2,
        seed,
        ssh: Some(SshConfig {
            port: 2222,
            // A description edit every second: changes for the diffing to find.
            config_change_every: Some(Duration::from_secs(1)),
            ..SshConfig::default()
        }),
        ..FleetConfig::default()
    })
    .await
    .unwrap()
}

/// `devices` simulated devices from `base`, one interface each, serving SSH on an
/// ephemeral port without configuration edits; tests override what they need.
fn quiet_fleet(devices: usize, base: &str, seed: u64) -> FleetConfig {
    FleetConfig {
        devices,
        base_address: base.parse().unwrap(),
        port: 0,
        interfaces: 1,
        seed,
        ssh: Some(SshConfig {
            port: 0,
            config_change_every: None,
            ..SshConfig::default()
        }),
        ..FleetConfig::default()
    }
}

/// SSH-only entries for every device of `fleet`: `show interfaces` and
/// `show running-config` every 500 ms, the platform detected.
fn devices(fleet: &Fleet, host_key: Option<String>) -> Vec<DeviceEntry> {
    fleet
        .devices()
        .iter()
        .map(|d| {
            let addr = d.ssh_addr.unwrap();
            let mut spec = DeviceSpec::new(addr.ip().to_string());
            spec.gnmi.enabled = false;
            spec.credentials = Some(SecretRef {
                name: "sim".into(),
                username_key: None,
                password_key: None,
            });
            spec.ssh = Some(SshSpec {
                port: addr.port(),
                host_key: host_key.clone(),
                known_hosts_secret: None,
                trust_on_first_use: host_key.is_none(),
                commands: ["show interfaces", "show running-config"]
                    .into_iter()
                    .map(|c| SshCommand {
                        command: c.into(),
                        interval: "500ms".into(),
                    })
                    .collect(),
                platform: None,
                mode: SshMode::Shell,
                prompt: None,
                legacy_algorithms: false,
                aaa_group: None,
                private_key_secret: None,
            });
            DeviceEntry {
                name: DeviceKey::new(&d.name).unwrap(),
                spec,
            }
        })
        .collect()
}

fn ssh_config(secrets: &std::path::Path) -> CollectorConfig {
    let sim = secrets.join("sim");
    std::fs::create_dir_all(&sim).unwrap();
    std::fs::write(sim.join("username"), simulator::DEFAULT_SSH_USERNAME).unwrap();
    std::fs::write(sim.join("password"), simulator::DEFAULT_SSH_PASSWORD).unwrap();
    CollectorConfig {
        secrets_dir: Some(secrets.to_owned()),
        refused_backoff: Duration::from_millis(300),
        ..config()
    }
}

/// Points stored for `device`'s `leaf` of interface `Ethernet1`.
async fn points(store: &dyn store::Store, device: &str, leaf: &str) -> usize {
    let path: model::Path = format!("/interfaces/interface[name=Ethernet1]/state/{leaf}")
        .parse()
        .unwrap();
    let key = DeviceKey::new(device).unwrap();
    store.range(&key, &path, 0, i64::MAX).await.unwrap().len()
}

#[tokio::test]
async fn an_ssh_only_device_gets_the_gnmi_series_and_keeps_its_raw_outputs() {
    let fleet = fleet("127.41.0.1", 7).await;
    let (_secrets, dir) = secrets_dir();
    let host_key = fleet.ssh_host_key().unwrap().to_owned();
    let entries = devices(&fleet, Some(host_key));
    let names: Vec<String> = entries.iter().map(|d| d.name.to_string()).collect();
    let running = collect(entries, ssh_config(&dir)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut done = true;
        for name in &names {
            done &= points(&*running.store, name, "counters/in-octets").await >= 2;
        }
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CLI counters stored; health: {:?}",
            running.health.device(&DeviceKey::new(&names[0]).unwrap())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Edits come every second: give the polls (every 500 ms) time to see some.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for name in &names {
        let key = DeviceKey::new(name).unwrap();
        while running
            .store
            .cli_changes(&key, i64::MIN, 1)
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no change recorded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (store, metrics, _db) = running.stop().await;
    for name in &names {
        let key = DeviceKey::new(name).unwrap();
        // Every counter leaf gNMI serves, and the status, on the same paths.
        for leaf in [
            "counters/out-octets",
            "counters/in-pkts",
            "counters/in-errors",
            "oper-status",
        ] {
            assert!(points(&*store, name, leaf).await >= 1, "{name}: {leaf}");
        }
        // Counters only grow between polls.
        let path: model::Path = "/interfaces/interface[name=Ethernet1]/state/counters/in-octets"
            .parse()
            .unwrap();
        let values: Vec<f64> = store
            .range(&key, &path, 0, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|p| p.value.as_f64().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
        // The raw running config is the latest output of its command.
        let config = store
            .cli_output(&key, "show running-config")
            .await
            .unwrap()
            .expect("the running config is kept");
        assert!(config.output.contains("hostname"), "{}", config.output);
        assert!(!config.truncated);
        // Its edits are changes with a diff; the counters of `show interfaces` are not.
        let changes = store.cli_changes(&key, i64::MIN, 100).await.unwrap();
        assert!(
            changes.iter().all(|c| c.command == "show running-config"),
            "{changes:?}"
        );
        let edit = changes.first().expect("a running-config edit recorded");
        assert!(
            edit.diff.contains("+   description") || edit.diff.contains("+ description"),
            "{}",
            edit.diff
        );
        assert!(edit.added >= 1 && edit.removed >= 1, "{edit:?}");
    }
    let ok = metrics
        .cli_polls
        .get_or_create(&collector::CliResultLabel { result: "ok" })
        .get();
    assert!(ok >= 4, "{ok} polls");
}

#[tokio::test]
async fn a_host_key_learned_on_first_use_is_recorded_and_a_changed_one_refused() {
    let (_secrets, dir) = secrets_dir();
    let first = fleet("127.41.1.1", 7).await;
    let learned_key = first.ssh_host_key().unwrap().to_owned();
    let entries = devices(&first, None);
    let name = entries[0].name.clone();
    let running = collect(entries.clone(), ssh_config(&dir)).await;
    running
        .wait_for(name.as_str(), "a synced SSH device", |h| {
            h.state == "synced"
        })
        .await;
    let store = running.store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        if let Some(r) = store.cli_output(&name, "#ssh-host-key").await.unwrap() {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no learned key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(record.output.trim(), learned_key.trim());
    let (store, _, _db) = running.stop().await;
    first.shutdown().await;

    // The same addresses now answer with another host key (another seed).
    let second = fleet("127.41.1.1", 8).await;
    assert_ne!(second.ssh_host_key().unwrap(), learned_key);
    let kept = store.clone();
    let running = collect_with(entries, ssh_config(&dir), move |_| kept).await;
    let health = running
        .wait_for(name.as_str(), "the changed key refused", |h| {
            h.state == "unreachable"
        })
        .await;
    let error = health.last_error.unwrap_or_default();
    assert!(error.contains("host key"), "{error}");
    assert!(error.contains("SHA256:"), "{error}");
    // The record still holds the first key.
    let record = store
        .cli_output(&name, "#ssh-host-key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.output.trim(), learned_key.trim());
    running.stop().await;
}

/// A template directory whose only template refuses every `show running-config`.
fn refusing_templates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index"),
        "Template, Hostname, Platform, Command\n\n\
         refuse_running_config.textfsm, .*, .*, sh[[ow]] ru[[nning-config]]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("refuse_running_config.textfsm"),
        "Value LINE (.*)\n\nStart\n  ^.* -> Error \"not a table\"\n",
    )
    .unwrap();
    dir
}

/// (local interface, neighbour, neighbour's port) of every LLDP neighbour of `device` as
/// its gNMI series say.
async fn gnmi_neighbours(store: &dyn store::Store, device: &str) -> BTreeSet<Neighbour> {
    let key = DeviceKey::new(device).unwrap();
    let series = store.series(&key).await.unwrap();
    let text = |path: &str| {
        series.iter().find_map(|s| match &s.last_value {
            model::Value::String(v) if s.path.to_string() == path => Some(v.clone()),
            _ => None,
        })
    };
    series
        .iter()
        .filter_map(|s| {
            let path = s.path.to_string();
            let prefix = path.strip_suffix("/state/system-name")?;
            let local = path
                .strip_prefix("/lldp/interfaces/interface[name=")?
                .split(']')
                .next()?
                .to_owned();
            let name = text(&path)?;
            let port = text(&format!("{prefix}/state/port-id"))?;
            Some((local, name, port))
        })
        .collect()
}

type Neighbour = (String, String, String);

/// The same neighbours in a stored LLDP snapshot.
fn snapshot_neighbours(snapshot: &store::CliSnapshot) -> BTreeSet<Neighbour> {
    let column = |row: &store::SnapshotRow, c: &str| {
        row.get(c)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{c} in {row:?}"))
            .to_owned()
    };
    snapshot
        .rows
        .iter()
        .map(|row| {
            (
                column(row, "LOCAL_INTERFACE"),
                column(row, "NEIGHBOR_NAME"),
                column(row, "NEIGHBOR_INTERFACE"),
            )
        })
        .collect()
}

#[tokio::test]
async fn parsed_tables_are_stored_as_snapshots_and_unparsable_outputs_kept_raw() {
    // Two EOS spines and two IOS leaves, each leaf linked to both spines.
    let fleet = Fleet::start(FleetConfig {
        interfaces: 2,
        spines: 2,
        ..quiet_fleet(4, "127.41.2.1", 7)
    })
    .await
    .unwrap();
    let (_secrets, dir) = secrets_dir();
    let host_key = fleet.ssh_host_key().unwrap().to_owned();
    // SSH only: LLDP, version and running config (which a template refuses).
    let mut entries = devices(&fleet, Some(host_key));
    for entry in &mut entries {
        let ssh = entry.spec.ssh.as_mut().unwrap();
        ssh.commands = ["show lldp neighbors", "show version", "show running-config"]
            .into_iter()
            .map(|c| SshCommand {
                command: c.into(),
                interval: "300ms".into(),
            })
            .collect();
    }
    // The same devices over gNMI under other names: what the simulator reports of LLDP.
    let twins: Vec<DeviceEntry> = fleet
        .devices()
        .iter()
        .map(|d| {
            let mut spec = DeviceSpec::new(d.addr.ip().to_string());
            spec.gnmi.port = d.addr.port();
            spec.gnmi.insecure = true;
            spec.gnmi.subscriptions = vec![crds::Subscription::sample("/lldp", "300ms")];
            DeviceEntry {
                name: DeviceKey::new(format!("{}-gnmi", d.name)).unwrap(),
                spec,
            }
        })
        .collect();
    let templates = refusing_templates();
    let config = CollectorConfig {
        cli_templates_dir: Some(templates.path().to_owned()),
        ..ssh_config(&dir)
    };
    let names: Vec<String> = entries.iter().map(|d| d.name.to_string()).collect();
    let running = collect(entries.into_iter().chain(twins).collect(), config).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for name in &names {
        let key = DeviceKey::new(name).unwrap();
        loop {
            let store = &*running.store;
            let lldp = store
                .cli_snapshot(&key, "show lldp neighbors")
                .await
                .unwrap();
            let version = store.cli_snapshot(&key, "show version").await.unwrap();
            let config = store.cli_output(&key, "show running-config").await.unwrap();
            let gnmi = gnmi_neighbours(store, &format!("{name}-gnmi")).await;
            // Seen a few times, so that unchanged tables had the chance to make rows.
            let seen_again = |s: &Option<store::CliSnapshot>| {
                s.as_ref()
                    .is_some_and(|s| s.last_seen - s.ts >= 1_000_000_000)
            };
            if seen_again(&lldp) && seen_again(&version) && config.is_some() && gnmi.len() == 2 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: lldp {lldp:?}, version {version:?}, gNMI neighbours {gnmi:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (store, metrics, _db) = running.stop().await;
    for (name, device) in names.iter().zip(fleet.devices()) {
        let key = DeviceKey::new(name).unwrap();
        let platform = device.platform.unwrap().as_str();
        // The LLDP snapshot's neighbours are the ones the device reports over gNMI.
        let lldp = store
            .cli_snapshot(&key, "show lldp neighbors")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            lldp.template,
            format!("{platform}_show_lldp_neighbors.textfsm")
        );
        assert!(!lldp.truncated);
        let neighbours = snapshot_neighbours(&lldp);
        assert_eq!(neighbours.len(), 2, "{name}: {neighbours:?}");
        assert_eq!(
            neighbours,
            gnmi_neighbours(&*store, &format!("{name}-gnmi")).await,
            "{name}"
        );
        // The version snapshot: one row, without the uptime that changes every poll.
        let version = store
            .cli_snapshot(&key, "show version")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version.template, format!("{platform}_show_version.textfsm"));
        assert_eq!(version.rows.len(), 1, "{version:?}");
        let row = &version.rows[0];
        assert!(!row.contains_key("UPTIME"), "{row:?}");
        let identity = if platform == "cisco_ios" {
            row["HOSTNAME"].as_str().unwrap().to_owned()
        } else {
            row["SERIAL_NUMBER"].as_str().unwrap().to_owned()
        };
        assert!(!identity.is_empty(), "{row:?}");
        if platform == "cisco_ios" {
            assert_eq!(identity, *name);
            assert!(row["HARDWARE"].is_array(), "a List value: {row:?}");
        }
        // Polled again and again, unchanged: one snapshot each, seen until the end.
        let history = store
            .cli_snapshots(&key, None, i64::MIN, 100)
            .await
            .unwrap();
        assert_eq!(history.len(), 2, "{name}: {history:?}");
        // The refused running config is kept raw, without a snapshot.
        let config = store
            .cli_output(&key, "show running-config")
            .await
            .unwrap()
            .unwrap();
        assert!(config.output.contains("hostname"), "{}", config.output);
        assert!(
            store
                .cli_snapshot(&key, "show running-config")
                .await
                .unwrap()
                .is_none()
        );
    }
    let refused = metrics.cli_parse_errors.get();
    assert!(refused >= names.len() as u64, "{refused} parse errors");
    assert_eq!(metrics.cli_snapshot_changes.get(), 0, "nothing changed");
    fleet.shutdown().await;
}

/// The enable secret of the simulated devices in the enable tests.
const ENABLE_SECRET: &str = "en-s3cret";
/// Where the collector reads it: this key of the credentials Secret (documented).
const ENABLE_SECRET_KEY: &str = "enable-secret";

/// IOS-like devices whose `enable` asks for [`ENABLE_SECRET`].
async fn enable_fleet(base: &str) -> Fleet {
    Fleet::start(FleetConfig {
        interfaces: 2,
        ssh: Some(SshConfig {
            port: 0,
            platforms: simulator::PlatformMix::All(simulator::Platform::CiscoIos),
            config_change_every: None,
            enable_password: Some(ENABLE_SECRET.into()),
            ..SshConfig::default()
        }),
        ..quiet_fleet(1, base, 7)
    })
    .await
    .unwrap()
}

/// [`devices`] polling `show running-config` only, with the platform set.
fn running_config_devices(fleet: &Fleet) -> Vec<DeviceEntry> {
    let host_key = fleet.ssh_host_key().unwrap().to_owned();
    let mut entries = devices(fleet, Some(host_key));
    for entry in &mut entries {
        let ssh = entry.spec.ssh.as_mut().unwrap();
        ssh.platform = Some(crds::CliPlatform::CiscoIos);
        ssh.commands = vec![SshCommand {
            command: "show running-config".into(),
            interval: "300ms".into(),
        }];
    }
    entries
}

#[tokio::test]
async fn the_enable_secret_of_the_credentials_secret_answers_enable() {
    let fleet = enable_fleet("127.41.3.1").await;
    let (_secrets, dir) = secrets_dir();
    let config = ssh_config(&dir);
    std::fs::write(
        dir.join("sim").join(ENABLE_SECRET_KEY),
        format!("{ENABLE_SECRET}\n"),
    )
    .unwrap();
    let entries = running_config_devices(&fleet);
    let name = entries[0].name.clone();
    let running = collect(entries, config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let config = loop {
        if let Some(c) = running
            .store
            .cli_output(&name, "show running-config")
            .await
            .unwrap()
        {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no running config; health: {:?}",
            running.health.device(&name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Only a privileged shell gets the configuration (user mode: `% Invalid input`).
    assert!(
        config.output.contains(&format!("hostname {name}")),
        "{}",
        config.output
    );
    let health = running.health.device(&name).unwrap();
    assert_eq!(health.state, "synced", "{health:?}");
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_wrong_or_missing_enable_secret_is_a_clear_refusal() {
    let fleet = enable_fleet("127.41.4.1").await;
    let entries = running_config_devices(&fleet);
    let name = entries[0].name.clone();

    let (_secrets, dir) = secrets_dir();
    let config = ssh_config(&dir);
    std::fs::write(dir.join("sim").join(ENABLE_SECRET_KEY), "not-the-secret").unwrap();
    let running = collect(entries.clone(), config).await;
    let health = running
        .wait_for(name.as_str(), "the enable secret refused", |h| {
            h.state == "unreachable"
        })
        .await;
    let error = health.last_error.unwrap_or_default();
    assert_eq!(
        error,
        format!(
            "enable on {name} was refused: the enable secret was not accepted; \
             device said \"% Access denied\""
        )
    );
    assert!(!error.contains("not-the-secret"));
    let (store, _, _db) = running.stop().await;
    assert!(
        store
            .cli_output(&name, "show running-config")
            .await
            .unwrap()
            .is_none(),
        "nothing collected in user mode"
    );

    // No enable secret at all: the error says which key to set.
    let (_secrets, dir) = secrets_dir();
    let running = collect(entries, ssh_config(&dir)).await;
    let health = running
        .wait_for(name.as_str(), "the missing enable secret", |h| {
            h.state == "unreachable"
        })
        .await;
    let error = health.last_error.unwrap_or_default();
    assert!(
        error.contains(name.as_str())
            && error.contains("asks for an enable secret")
            && error.contains(ENABLE_SECRET_KEY),
        "{error}"
    );
    running.stop().await;
    fleet.shutdown().await;
}

/// Device status bodies the collector's status writer sent to a fake API server.
type Patches = Arc<Mutex<Vec<serde_json::Value>>>;

/// A collector for `devices` over `store` whose Device status goes through the real
/// status writer to an API server answering every request with its body (the
/// tower-test request level, as in the `k8s` unit tests); the bodies are recorded.
fn collect_to_status(
    devices: Vec<DeviceEntry>,
    config: CollectorConfig,
    store: Arc<dyn store::Store>,
) -> (CancellationToken, tokio::task::JoinHandle<()>, Patches) {
    use http::{Request, Response};
    use kube::client::Body;
    let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api: kube::Api<crds::Device> = kube::Api::namespaced(kube::Client::new(mock, "net"), "net");
    let patches = Patches::default();
    let seen = patches.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            seen.lock().unwrap().push(body["status"].clone());
            body["spec"] = serde_json::json!({ "address": "192.0.2.1" });
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
    });
    let writer = collector::k8s::StatusWriter::new(collector::k8s::StatusLimits {
        per_device: Duration::from_millis(50),
        ..collector::k8s::StatusLimits::default()
    });
    let shutdown = CancellationToken::new();
    let writing = tokio::spawn(writer.clone().run(api, "pod-0".into(), shutdown.clone()));
    let sink: Arc<dyn collector::status::StateSink> = writer;
    let services = collector::Services {
        store,
        bus: bus::open(None, "test").unwrap(),
        metrics: Arc::new(collector::CollectorMetrics::default()),
        health: collector::HealthBook::default(),
    };
    let identity = collector::Identity {
        name: "pod-0".into(),
        pool: String::new(),
        sink: Some(sink),
    };
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        collector::run_assigned(
            collector::membership::fixed(devices),
            identity,
            services,
            config,
            stop,
        )
        .await
        .unwrap();
        writing.await.unwrap();
        server.abort();
    });
    (shutdown, task, patches)
}

/// Waits (20 s at most) for a recorded status that `check` accepts.
async fn status_where(
    patches: &Patches,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = patches.lock().unwrap().iter().find(|s| check(s)) {
            return status.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no status with {what}: {:?}",
            patches.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_host_key_learned_on_first_use_is_in_the_device_status() {
    let first = Fleet::start(quiet_fleet(1, "127.41.5.1", 7)).await.unwrap();
    let fingerprint = |fleet: &Fleet| {
        sshcli::session::LearnedHostKey::from_openssh(fleet.ssh_host_key().unwrap())
            .unwrap()
            .fingerprint
    };
    let learned = fingerprint(&first);
    let (_secrets, dir) = secrets_dir();
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", db.path().join("t.db").display());
    let store = store::open(&url, true).await.unwrap();
    let (stop, task, patches) =
        collect_to_status(devices(&first, None), ssh_config(&dir), store.clone());
    let synced = status_where(&patches, "the learned key, connected", |s| {
        s["phase"] == "Connected" && s.get("sshHostKey").is_some()
    })
    .await;
    let key = synced["sshHostKey"].clone();
    assert_eq!(key["algorithm"], "ssh-ed25519");
    assert_eq!(key["fingerprint"], learned.as_str());
    // When it was recorded in the store, which every collector shares.
    let name = DeviceKey::new(&first.devices()[0].name).unwrap();
    let record = store
        .cli_output(&name, "#ssh-host-key")
        .await
        .unwrap()
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(key["learnedAt"].as_str().unwrap()).unwrap();
    assert_eq!(at.timestamp(), record.ts / 1_000_000_000);
    let status: crds::DeviceStatus = serde_json::from_value(synced).unwrap();
    assert_eq!(
        status.ssh_host_key.map(|k| k.fingerprint),
        Some(learned.clone())
    );
    stop.cancel();
    task.await.unwrap();
    first.shutdown().await;

    // Another key at the same device: refused, both fingerprints in `lastError`, and
    // the status still shows the key learned first (loaded from the store).
    let second = Fleet::start(quiet_fleet(1, "127.41.5.1", 8)).await.unwrap();
    let presented = fingerprint(&second);
    assert_ne!(presented, learned);
    let (stop, task, patches) = collect_to_status(devices(&second, None), ssh_config(&dir), store);
    let refused = status_where(&patches, "the changed key refused", |s| {
        s["phase"] == "Unreachable"
    })
    .await;
    let error = refused["lastError"].as_str().unwrap();
    assert!(
        error.contains("host key mismatch")
            && error.contains(&learned)
            && error.contains(&presented),
        "{error}"
    );
    assert_eq!(refused["sshHostKey"]["fingerprint"], learned.as_str());
    stop.cancel();
    task.await.unwrap();
    second.shutdown().await;
}

#[tokio::test]
async fn a_collector_with_more_ssh_devices_than_its_login_caps_polls_them_all() {
    // Six devices, half of them behind one AAA server; one login at a time per AAA group
    // and two per collector. Open sessions hold no login slot, so every device is polled.
    let fleet = Fleet::start(FleetConfig {
        ssh: Some(SshConfig {
            port: 2222,
            config_change_every: None,
            ..SshConfig::default()
        }),
        ..quiet_fleet(6, "127.41.6.1", 11)
    })
    .await
    .unwrap();
    let (_secrets, dir) = secrets_dir();
    let host_key = fleet.ssh_host_key().unwrap().to_owned();
    let mut entries = devices(&fleet, Some(host_key));
    for entry in entries.iter_mut().take(3) {
        if let Some(ssh) = entry.spec.ssh.as_mut() {
            ssh.aaa_group = Some("tacacs1".into());
        }
    }
    let names: Vec<DeviceKey> = entries.iter().map(|d| d.name.clone()).collect();
    let config = CollectorConfig {
        ssh_limits: sshcli::session::limit::Limits {
            per_device: 1,
            per_group: 1,
            global: 2,
        },
        ..ssh_config(&dir)
    };
    let running = collect(entries, config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut unpolled = Vec::new();
        for name in &names {
            let polled = running
                .store
                .cli_output(name, "show running-config")
                .await
                .unwrap()
                .is_some();
            if !polled {
                unpolled.push(name.to_string());
            }
        }
        if unpolled.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never polled: {unpolled:?}; {} sessions open, {} devices waiting",
            running.metrics.cli_sessions.get(),
            running.metrics.cli_waiting.get()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every session is open at once, and nobody waits.
    assert_eq!(running.metrics.cli_sessions.get(), 6);
    assert_eq!(running.metrics.cli_waiting.get(), 0);
    let (_store, metrics, _db) = running.stop().await;
    assert_eq!(metrics.cli_connects.get(), 6, "one login per device");
    fleet.shutdown().await;
}
