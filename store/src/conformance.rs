//! The behaviour every [`Store`] must show, as async test cases over `Arc<dyn Store>`.
//!
//! Each adapter's test module runs every case against a fresh, migrated store by passing a
//! macro to [`for_each_case`], so a new case runs on every backend at once. Timestamps here
//! are whole microseconds: PostgreSQL stores no finer (see the `postgres` module).

use std::sync::Arc;

use model::{DeviceEvent, DeviceKey, DeviceState, Path, Sample, TimestampNs, Value};

use crate::{DeviceInfo, HealthReport, Point, Store, TopRates, WriteReport};

/// Calls `$m! { case, ... }` with the name of every conformance case.
macro_rules! for_each_case {
    ($m:ident) => {
        $m! {
            upsert_and_list_devices,
            round_trip_every_value_kind,
            round_trip_gnmi_value_kinds,
            deletes_are_kept_in_order,
            a_series_first_seen_as_a_delete,
            nan_reads_back_as_nan,
            nul_in_text_is_replaced,
            writes_are_idempotent,
            implausible_timestamps_are_rejected_one_by_one,
            claims_never_go_back,
            steps_aggregate_and_keep_gaps,
            top_rates_rank_numeric_series,
            top_rates_refuse_unbounded_queries,
            retention_removes_expired_raw_samples,
            sealed_hours_answer_steps_from_rollups,
            fenced_writes_refuse_stale_epochs,
            duplicates_within_a_batch_keep_the_first,
            series_list_their_last_values,
            series_show_samples_written_in_quick_succession,
            older_samples_do_not_move_last_values,
            a_series_keeps_values_of_other_kinds,
            record_event_is_reflected_in_device,
            late_events_do_not_change_the_state,
            unknown_device_is_none,
            range_bounds_are_inclusive_and_ordered,
            ten_thousand_samples_in_one_call,
            concurrent_overlapping_writes,
            ping_answers,
            health_round_trips,
            newer_health_overwrites_older_does_not,
            health_creates_unknown_devices,
            cli_first_output_is_no_change,
            cli_same_output_moves_the_time_only,
            cli_changed_output_records_a_diff,
            cli_late_output_is_ignored,
            cli_line_ending_noise_is_no_change,
            cli_changes_are_newest_first_and_limited,
            cli_oversize_output_and_bad_queries_are_refused,
            cli_retention_removes_old_changes,
            cli_nul_in_output_is_replaced,
            cli_concurrent_outputs_of_one_command,
            cli_untracked_output_is_kept_without_changes,
            cli_first_snapshot_is_the_latest,
            cli_equal_snapshot_moves_last_seen_only,
            cli_changed_snapshots_make_a_history,
            cli_late_snapshot_is_ignored,
            cli_oversize_snapshot_and_bad_queries_are_refused,
            cli_snapshot_retention_keeps_the_latest,
            cli_concurrent_equal_snapshots_make_one_row,
        }
    };
}
pub(crate) use for_each_case;

const US: TimestampNs = 1_000;
/// 2026-01-01T00:00:00Z, a realistic device timestamp.
const T0: TimestampNs = 1_767_225_600_000_000_000;

fn key(name: &str) -> DeviceKey {
    DeviceKey::new(name).expect("valid device name")
}

fn path(s: &str) -> Path {
    s.parse().expect("valid path")
}

fn sample(device: &str, p: &str, ts: TimestampNs, value: Value) -> Sample {
    Sample {
        device: key(device),
        path: path(p).into(),
        ts,
        value,
    }
}

fn info(name: &str, address: &str) -> DeviceInfo {
    DeviceInfo {
        name: key(name),
        address: address.to_owned(),
    }
}

fn report(written: u64, duplicates: u64) -> WriteReport {
    WriteReport {
        written,
        duplicates,
        ..WriteReport::default()
    }
}

async fn all_points(store: &Arc<dyn Store>, device: &str, p: &str) -> Vec<Point> {
    store
        .range(&key(device), &path(p), TimestampNs::MIN, TimestampNs::MAX)
        .await
        .expect("range")
}

pub(crate) async fn upsert_and_list_devices(store: Arc<dyn Store>) {
    store.upsert_devices(&[]).await.expect("empty upsert");
    assert!(store.devices().await.expect("devices").is_empty());

    // Names whose order differs between byte order and natural-language collations.
    store
        .upsert_devices(&[
            info("ab", "10.0.0.1:57400"),
            info("a-b", "10.0.0.2:57400"),
            info("a1", "10.0.0.3:57400"),
            info("a.b", "10.0.0.4:57400"),
        ])
        .await
        .expect("upsert");
    let devices = store.devices().await.expect("devices");
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a-b", "a.b", "a1", "ab"]);
    let first = &devices[0];
    assert_eq!(first.address, "10.0.0.2:57400");
    assert_eq!(first.state, DeviceState::Pending);
    assert_eq!(first.last_error, None);
    assert_eq!(first.state_since, None);
    assert_eq!(first.last_sample, None);
    assert_eq!(first.series, 0);

    // Updates the address of known devices, adds new ones, leaves the others alone; of two
    // entries for one name the last wins.
    store
        .upsert_devices(&[
            info("ab", "192.0.2.1:6030"),
            info("zz", "192.0.2.9:6030"),
            info("zz", "192.0.2.10:6030"),
        ])
        .await
        .expect("second upsert");
    let devices = store.devices().await.expect("devices");
    let listed: Vec<(&str, &str)> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.address.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("a-b", "10.0.0.2:57400"),
            ("a.b", "10.0.0.4:57400"),
            ("a1", "10.0.0.3:57400"),
            ("ab", "192.0.2.1:6030"),
            ("zz", "192.0.2.10:6030"),
        ]
    );
    let one = store.device(&key("ab")).await.expect("device");
    assert_eq!(
        one.as_ref(),
        devices.iter().find(|d| d.name.as_str() == "ab")
    );
}

pub(crate) async fn round_trip_every_value_kind(store: Arc<dyn Store>) {
    let values = [
        ("/int", Value::Int(-42)),
        ("/int-min", Value::Int(i64::MIN)),
        ("/int-max", Value::Int(i64::MAX)),
        ("/uint", Value::Uint(1 << 53)),
        ("/uint-max", Value::Uint(u64::MAX)),
        ("/float", Value::Float(1.5)),
        ("/float-tiny", Value::Float(-2.5e-300)),
        ("/float-inf", Value::Float(f64::NEG_INFINITY)),
        ("/bool-true", Value::Bool(true)),
        ("/bool-false", Value::Bool(false)),
        ("/string", Value::String("UP".into())),
        ("/string-empty", Value::String(String::new())),
        (
            "/string-unicode",
            Value::String("liên kết ✓ [x=1]/'\"".into()),
        ),
    ];
    // The oldest admitted instant, and two realistic ones.
    let times = [crate::OLDEST_SAMPLE_TS, T0 - 1_000 * US, T0];
    let samples: Vec<Sample> = values
        .iter()
        .flat_map(|(p, v)| times.iter().map(|&ts| sample("leaf1", p, ts, v.clone())))
        .collect();
    let written = store.write_samples(&samples).await.expect("write");
    assert_eq!(written, report(39, 0));
    for (p, value) in &values {
        let points = all_points(&store, "leaf1", p).await;
        let expected: Vec<Point> = times
            .iter()
            .map(|&ts| Point {
                ts,
                value: value.clone(),
            })
            .collect();
        assert_eq!(points, expected, "{p}");
    }
    let device = store.device(&key("leaf1")).await.expect("device");
    let device = device.expect("writing creates the device");
    assert_eq!(device.address, "");
    assert_eq!(device.series, 13);
    assert_eq!(device.last_sample, Some(T0));
}

pub(crate) async fn round_trip_gnmi_value_kinds(store: Arc<dyn Store>) {
    let values = [
        (
            "/decimal",
            Value::Decimal {
                digits: 12345,
                precision: 2,
            },
        ),
        (
            "/decimal-exact",
            Value::Decimal {
                digits: i64::MIN,
                precision: 18,
            },
        ),
        ("/bytes", Value::Bytes(vec![0, 1, 0x7f, 0xff])),
        ("/bytes-empty", Value::Bytes(vec![])),
        (
            "/leaflist",
            Value::LeafList(vec![
                Value::Uint(u64::MAX),
                Value::Int(-1),
                Value::String("a\"b".into()),
                Value::Decimal {
                    digits: 5,
                    precision: 1,
                },
            ]),
        ),
        ("/leaflist-empty", Value::LeafList(vec![])),
        (
            "/any",
            Value::Any {
                type_url: "type.googleapis.com/x.Y".into(),
                value: vec![8, 150, 1, 0],
            },
        ),
    ];
    let times = [crate::OLDEST_SAMPLE_TS, T0 - 1_000 * US, T0];
    let samples: Vec<Sample> = values
        .iter()
        .flat_map(|(p, v)| times.iter().map(|&ts| sample("leaf1", p, ts, v.clone())))
        .collect();
    let written = store.write_samples(&samples).await.expect("write");
    assert_eq!(written, report(21, 0));
    for (p, value) in &values {
        let points = all_points(&store, "leaf1", p).await;
        let expected: Vec<Point> = times
            .iter()
            .map(|&ts| Point {
                ts,
                value: value.clone(),
            })
            .collect();
        assert_eq!(points, expected, "{p}");
    }
    let series = store.series(&key("leaf1")).await.expect("series");
    assert_eq!(series.len(), values.len());
    for s in &series {
        let (_, value) = values
            .iter()
            .find(|(p, _)| path(p) == s.path)
            .expect("a written path");
        assert_eq!(&s.last_value, value, "{}", s.path);
    }
}

pub(crate) async fn deletes_are_kept_in_order(store: Arc<dyn Store>) {
    let p = "/interfaces/interface[name=e1]/state/counters/in-octets";
    let d = "/interfaces/interface[name=e1]/state/description";
    let batch = [
        sample("leaf1", p, T0, Value::Uint(10)),
        sample("leaf1", p, T0 + US, Value::Deleted),
        sample("leaf1", p, T0 + 2 * US, Value::Uint(30)),
        sample("leaf1", d, T0, Value::String("uplink".into())),
        sample("leaf1", d, T0 + US, Value::Deleted),
    ];
    store.write_samples(&batch).await.expect("write");
    let values: Vec<Value> = all_points(&store, "leaf1", p)
        .await
        .into_iter()
        .map(|point| point.value)
        .collect();
    // The series keeps its kind: the value after the delete is a uint again.
    assert_eq!(
        values,
        vec![Value::Uint(10), Value::Deleted, Value::Uint(30)]
    );
    let desc = all_points(&store, "leaf1", d).await;
    assert_eq!(desc.last().map(|point| &point.value), Some(&Value::Deleted));
    let series = store.series(&key("leaf1")).await.expect("series");
    let last = |q: &str| {
        series
            .iter()
            .find(|s| s.path == path(q))
            .map(|s| s.last_value.clone())
    };
    assert_eq!(last(p), Some(Value::Uint(30)));
    assert_eq!(last(d), Some(Value::Deleted));
}

pub(crate) async fn a_series_first_seen_as_a_delete(store: Arc<dyn Store>) {
    let entry = "/interfaces/interface[name=e9]";
    store
        .write_samples(&[sample("leaf1", entry, T0, Value::Deleted)])
        .await
        .expect("write");
    let points = all_points(&store, "leaf1", entry).await;
    assert_eq!(
        points,
        vec![Point {
            ts: T0,
            value: Value::Deleted
        }]
    );
    // Later values of other kinds read back as themselves (numbers as floats).
    store
        .write_samples(&[
            sample("leaf1", entry, T0 + US, Value::String("x".into())),
            sample("leaf1", entry, T0 + 2 * US, Value::Uint(2)),
        ])
        .await
        .expect("write");
    let values: Vec<Value> = all_points(&store, "leaf1", entry)
        .await
        .into_iter()
        .map(|point| point.value)
        .collect();
    assert_eq!(
        values,
        vec![Value::Deleted, Value::String("x".into()), Value::Float(2.0)]
    );
}

pub(crate) async fn nan_reads_back_as_nan(store: Arc<dyn Store>) {
    let nan = sample("leaf1", "/f", T0, Value::Float(f64::NAN));
    store.write_samples(&[nan]).await.expect("write");
    let points = all_points(&store, "leaf1", "/f").await;
    assert_eq!(points.len(), 1);
    assert!(
        matches!(points[0].value, Value::Float(v) if v.is_nan()),
        "{points:?}"
    );
    let series = store.series(&key("leaf1")).await.expect("series");
    assert!(
        matches!(series[0].last_value, Value::Float(v) if v.is_nan()),
        "{series:?}"
    );
}

pub(crate) async fn nul_in_text_is_replaced(store: Arc<dyn Store>) {
    let s = sample("leaf1", "/desc", T0, Value::String("a\0b".into()));
    store.write_samples(&[s]).await.expect("write");
    let points = all_points(&store, "leaf1", "/desc").await;
    assert_eq!(points[0].value, Value::String("a\u{FFFD}b".into()));
    let event = DeviceEvent {
        device: key("leaf1"),
        state: DeviceState::Unreachable,
        error: Some("bad\0byte".into()),
        ts: T0,
    };
    store.record_event(&event).await.expect("event");
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(device.last_error.as_deref(), Some("bad\u{FFFD}byte"));
}

fn counters(device: &str, n: i64) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let p = format!("/interfaces/interface[name=Ethernet{}]/in-octets", i % 5);
            sample(device, &p, T0 + i * US, Value::Uint(i as u64 * 100))
        })
        .collect()
}

pub(crate) async fn implausible_timestamps_are_rejected_one_by_one(store: Arc<dyn Store>) {
    let hour = 3_600_000_000_000;
    let now = crate::now_ns();
    let batch = vec![
        sample("leaf1", "/a", T0, Value::Uint(1)),
        // A device whose clock was never set.
        sample("leaf1", "/a", 1_000, Value::Uint(2)),
        sample("leaf2", "/b", now + 3 * hour, Value::Uint(3)),
        sample("leaf2", "/b", now, Value::Uint(4)),
        sample("leaf1", "/c", 0, Value::Uint(5)),
    ];
    let report = store
        .write_samples(&batch)
        .await
        .expect("the batch is written");
    assert_eq!((report.written, report.duplicates), (2, 0));
    assert_eq!(report.rejected, 3);
    let reasons: Vec<(&str, &str)> = report
        .rejections
        .iter()
        .map(|r| (r.device.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "one per device: {reasons:?}");
    assert_eq!(reasons[0].0, "leaf1");
    assert!(
        reasons[0]
            .1
            .contains("/a: timestamp 1000 ns is before 2000-01-01"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "leaf2");
    assert!(
        reasons[1].1.contains("ahead of the store's clock"),
        "{reasons:?}"
    );
    let values = |p: &'static str| {
        let store = store.clone();
        async move {
            all_points(&store, "leaf1", p)
                .await
                .into_iter()
                .map(|p| p.value)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(values("/a").await, vec![Value::Uint(1)]);
    assert!(values("/c").await.is_empty());
    let b: Vec<Value> = all_points(&store, "leaf2", "/b")
        .await
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(b, vec![Value::Uint(4)]);
    // A batch with nothing admissible is an empty write, not an error.
    let none = store
        .write_samples(&batch[1..2])
        .await
        .expect("still not an error");
    assert_eq!((none.written, none.rejected), (0, 1));
}

pub(crate) async fn steps_aggregate_and_keep_gaps(store: Arc<dyn Store>) {
    let s = 1_000_000_000;
    let p = "/interfaces/interface[name=Ethernet1]/state/counters/in-octets";
    // Every 10 s for a minute, then a two-minute silence, then a reset.
    let mut batch: Vec<Sample> = (0..6)
        .map(|i| {
            sample(
                "leaf1",
                p,
                T0 + i * 10 * s,
                Value::Uint(1_000 + 100 * i as u64),
            )
        })
        .collect();
    batch.push(sample("leaf1", p, T0 + 180 * s, Value::Uint(50)));
    store.write_samples(&batch).await.expect("write");
    let buckets = store
        .range_step(&key("leaf1"), &path(p), T0, T0 + 239 * s, 60 * s)
        .await
        .expect("steps");
    assert_eq!(buckets.len(), 4);
    let first = buckets[0].stats.clone().expect("data");
    assert_eq!(
        (first.count, first.min, first.max, first.last),
        (6, 1_000.0, 1_500.0, 1_500.0)
    );
    assert_eq!(first.increase, 500.0);
    assert!(
        buckets[1].stats.is_none() && buckets[2].stats.is_none(),
        "gaps"
    );
    assert_eq!(
        buckets[3].stats.as_ref().map(|s| s.increase),
        Some(50.0),
        "a reset"
    );
    assert!(matches!(
        store
            .range_step(&key("leaf1"), &path(p), T0, T0 + s, 0)
            .await,
        Err(crate::Error::Step(crate::StepError::NotPositive))
    ));
}

/// A fleet for rate queries over `[T0, T0 + 60 s]`: counters of three devices (one reset,
/// one delete, ties), series that have no rate (text, bool, decimal, one sample), samples
/// outside the window, and paths whose keys hold `/in-octets`.
fn rate_fleet() -> Vec<Sample> {
    let s = 1_000_000_000;
    let counter = |ifname: &str, leaf: &str| {
        format!("/interfaces/interface[name={ifname}]/state/counters/{leaf}")
    };
    let series = |device: &str, p: &str, points: &[(i64, Value)]| -> Vec<Sample> {
        points
            .iter()
            .map(|(at, v)| sample(device, p, T0 + at * s, v.clone()))
            .collect()
    };
    let uints = |points: &[(i64, u64)]| -> Vec<(i64, Value)> {
        points.iter().map(|&(at, v)| (at, Value::Uint(v))).collect()
    };
    let in1 = counter("Ethernet1", "in-octets");
    [
        // 100/s; the samples before and after the window would change it.
        series(
            "leaf1",
            &in1,
            &uints(&[
                (-10, 9_000),
                (0, 0),
                (10, 1_000),
                (20, 2_000),
                (30, 3_000),
                (70, 100),
            ]),
        ),
        // 100/s too: ties, ordered by device, then path bytes (Ethernet10 < Ethernet1]).
        series("leaf2", &in1, &uints(&[(5, 500), (15, 1_500), (25, 2_500)])),
        series(
            "leaf2",
            &counter("Ethernet10", "in-octets"),
            &uints(&[(0, 0), (10, 1_000)]),
        ),
        // A reset: 1000 + 500 + 1000 over 40 s.
        series(
            "leaf1",
            &counter("Ethernet2", "in-octets"),
            &uints(&[(0, 5_000), (10, 6_000), (20, 500), (40, 1_500)]),
        ),
        // A delete breaks the chain: only 400 -> 500 counts, over 30 s.
        series(
            "leaf3",
            &in1,
            &[
                (0, Value::Int(100)),
                (10, Value::Deleted),
                (20, Value::Int(400)),
                (30, Value::Int(500)),
            ],
        ),
        series(
            "leaf2",
            &counter("Ethernet1", "out-octets"),
            &[(0, Value::Float(0.0)), (10, Value::Float(10_000.0))],
        ),
        // One sample in the window: no rate.
        series(
            "leaf1",
            &counter("Ethernet3", "in-octets"),
            &uints(&[(10, 42), (70, 50)]),
        ),
        // Not numeric series: never ranked.
        series(
            "spine1",
            &in1,
            &[
                (0, Value::String("n/a".into())),
                (10, Value::String("1000".into())),
            ],
        ),
        series(
            "spine1",
            "/interfaces/interface[name=Ethernet1]/state/enabled",
            &[(0, Value::Bool(false)), (10, Value::Bool(true))],
        ),
        series(
            "spine1",
            "/components/component[name=psu1]/state/temperature/instant",
            &[
                (
                    0,
                    Value::Decimal {
                        digits: 100,
                        precision: 1,
                    },
                ),
                (
                    10,
                    Value::Decimal {
                        digits: 200,
                        precision: 1,
                    },
                ),
            ],
        ),
        // Leaves that only look like `in-octets` on the path string.
        series(
            "leaf1",
            "/probe[target=a/in-octets[x]",
            &uints(&[(0, 0), (10, 1_000)]),
        ),
        series(
            "leaf1",
            "/interfaces/interface[name=x/in-octets]",
            &uints(&[(0, 0), (10, 20)]),
        ),
        series("leaf1", "/counters/xin-octets", &uints(&[(0, 0), (10, 30)])),
    ]
    .concat()
}

pub(crate) async fn top_rates_rank_numeric_series(store: Arc<dyn Store>) {
    let s = 1_000_000_000;
    store.write_samples(&rate_fleet()).await.expect("write");
    let in_octets =
        |ifname: &str| format!("/interfaces/interface[name={ifname}]/state/counters/in-octets");
    let top = |device: Option<&str>, leaf: Option<&str>, from: i64, to: i64, limit: usize| {
        let store = store.clone();
        let q = TopRates {
            device: device.map(key),
            leaf: leaf.map(str::to_owned),
            from: T0 + from * s,
            to: T0 + to * s,
            limit,
        };
        async move {
            let rates = store.top_rates(&q).await.expect("top rates");
            // Each series' increase and sample count are those of one step bucket over
            // the window: the same counter rules.
            for r in &rates {
                let buckets = store
                    .range_step(&r.device, &r.path, q.from, q.to, q.to - q.from + 1)
                    .await
                    .expect("one bucket");
                let stats = buckets[0].stats.clone().expect("data");
                assert_eq!(
                    (r.increase, u64::from(r.samples)),
                    (stats.increase, stats.count),
                    "{} {}",
                    r.device,
                    r.path
                );
            }
            rates
                .into_iter()
                .map(|r| {
                    let row = (r.device.to_string(), r.path.to_string(), r.per_second);
                    (row, r.increase, r.samples)
                })
                .collect::<Vec<_>>()
        }
    };
    let row =
        |device: &str, p: &str, per_second: f64| (device.to_owned(), p.to_owned(), per_second);
    let (l1e1, l2e1, l2e10, l1e2, l3e1) = (
        row("leaf1", &in_octets("Ethernet1"), 100.0),
        row("leaf2", &in_octets("Ethernet1"), 100.0),
        row("leaf2", &in_octets("Ethernet10"), 100.0),
        row("leaf1", &in_octets("Ethernet2"), 62.5),
        row("leaf3", &in_octets("Ethernet1"), 100.0 / 30.0),
    );

    // The whole fleet, every leaf.
    assert_eq!(
        top(None, None, 0, 60, 1000).await,
        [
            (
                row(
                    "leaf2",
                    "/interfaces/interface[name=Ethernet1]/state/counters/out-octets",
                    1_000.0
                ),
                10_000.0,
                2
            ),
            (l1e1.clone(), 3_000.0, 4),
            (
                row("leaf1", "/probe[target=a/in-octets[x]", 100.0),
                1_000.0,
                2
            ),
            (l2e10.clone(), 1_000.0, 2),
            (l2e1.clone(), 2_000.0, 3),
            (l1e2.clone(), 2_500.0, 4),
            (l3e1.clone(), 100.0, 3),
            (row("leaf1", "/counters/xin-octets", 3.0), 30.0, 2),
            (
                row("leaf1", "/interfaces/interface[name=x/in-octets]", 2.0),
                20.0,
                2
            ),
        ]
    );
    // One leaf: keys holding `/in-octets` and `xin-octets` are other leaves.
    let in_octets_rows = [
        (l1e1.clone(), 3_000.0, 4),
        (l2e10.clone(), 1_000.0, 2),
        (l2e1.clone(), 2_000.0, 3),
        (l1e2.clone(), 2_500.0, 4),
        (l3e1.clone(), 100.0, 3),
    ];
    assert_eq!(
        top(None, Some("in-octets"), 0, 60, 1000).await,
        in_octets_rows
    );
    // A leaf element with keys.
    assert_eq!(
        top(None, Some("interface"), 0, 60, 1000).await,
        [(
            row("leaf1", "/interfaces/interface[name=x/in-octets]", 2.0),
            20.0,
            2
        )]
    );
    // One device.
    assert_eq!(
        top(Some("leaf2"), Some("in-octets"), 0, 60, 1000).await,
        in_octets_rows[1..3]
    );
    assert_eq!(top(Some("leaf2"), None, 0, 60, 1000).await.len(), 3);
    // The limit keeps the first of the order, ties included.
    assert_eq!(
        top(None, Some("in-octets"), 0, 60, 2).await,
        in_octets_rows[..2]
    );
    assert_eq!(
        top(None, Some("in-octets"), 0, 60, 1).await,
        in_octets_rows[..1]
    );
    // A later window: earlier samples do not count, nor does the reset before it
    // (leaf1 Ethernet2 grows from 500 to 1500 in 20 s); leaf2 Ethernet10 drops out.
    assert_eq!(
        top(None, Some("in-octets"), 15, 60, 1000).await,
        [
            (row("leaf1", &in_octets("Ethernet1"), 100.0), 1_000.0, 2),
            (row("leaf2", &in_octets("Ethernet1"), 100.0), 1_000.0, 2),
            (row("leaf1", &in_octets("Ethernet2"), 50.0), 1_000.0, 2),
            (row("leaf3", &in_octets("Ethernet1"), 10.0), 100.0, 2),
        ]
    );
    // Bounds are inclusive: [10 s, 20 s] holds two samples of leaf1 Ethernet1.
    assert_eq!(
        top(Some("leaf1"), Some("in-octets"), 10, 20, 1).await,
        [(row("leaf1", &in_octets("Ethernet1"), 100.0), 1_000.0, 2)]
    );
    // Nothing to rank.
    assert!(top(None, Some("in-octets"), 100, 200, 10).await.is_empty());
    assert!(top(Some("nope"), None, 0, 60, 10).await.is_empty());
    assert!(top(None, Some("nope"), 0, 60, 10).await.is_empty());
    assert!(top(Some("spine1"), None, 0, 60, 10).await.is_empty());
}

pub(crate) async fn top_rates_refuse_unbounded_queries(store: Arc<dyn Store>) {
    use crate::{Error, RateError};
    store.write_samples(&rate_fleet()).await.expect("write");
    let ok = TopRates {
        device: None,
        leaf: Some("in-octets".into()),
        from: T0,
        to: T0 + 60_000_000_000,
        limit: 10,
    };
    assert_eq!(store.top_rates(&ok).await.expect("valid").len(), 5);
    let refused = [
        (
            TopRates {
                limit: 0,
                ..ok.clone()
            },
            RateError::NoLimit,
        ),
        (
            TopRates {
                limit: 1001,
                ..ok.clone()
            },
            RateError::LimitTooLarge(1001),
        ),
        (
            TopRates {
                to: T0,
                ..ok.clone()
            },
            RateError::EmptyWindow,
        ),
        (
            TopRates {
                to: T0 - 1,
                ..ok.clone()
            },
            RateError::EmptyWindow,
        ),
        (
            TopRates {
                leaf: Some("counters/in-octets".into()),
                ..ok.clone()
            },
            RateError::Leaf("counters/in-octets".into()),
        ),
    ];
    for (query, expected) in refused {
        match store.top_rates(&query).await {
            Err(Error::Rate(e)) => assert_eq!(e, expected, "{query:?}"),
            other => panic!("{query:?} gave {other:?}"),
        }
    }
}

pub(crate) async fn retention_removes_expired_raw_samples(store: Arc<dyn Store>) {
    let day = 86_400 * 1_000_000_000;
    let p = "/x";
    let batch: Vec<Sample> = [0, 2, 5, 9]
        .iter()
        .map(|d| sample("leaf1", p, T0 + d * day, Value::Uint(*d as u64)))
        .collect();
    store.write_samples(&batch).await.expect("write");
    let retention = crate::Retention::default();
    // Ten days after T0, seven days are kept: days 5 and 9 stay.
    let now = T0 + 10 * day;
    let report = store.maintain(now, &retention).await.expect("maintain");
    assert!(!report.skipped);
    let left: Vec<Value> = all_points(&store, "leaf1", p)
        .await
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(left, vec![Value::Uint(5), Value::Uint(9)]);
    // Running again changes nothing.
    let again = store
        .maintain(now, &retention)
        .await
        .expect("maintain again");
    assert!(
        again.created.is_empty() && again.dropped.is_empty() && again.deleted == 0,
        "{again:?}"
    );
    assert_eq!(all_points(&store, "leaf1", p).await.len(), 2);
    // The series and its last value stay: only raw history expires.
    let series = store.series(&key("leaf1")).await.expect("series");
    assert_eq!(series[0].last_value, Value::Uint(9));
}

pub(crate) async fn sealed_hours_answer_steps_from_rollups(store: Arc<dyn Store>) {
    const S: TimestampNs = 1_000_000_000;
    const HOUR: TimestampNs = 3_600 * S;
    const DAY: TimestampNs = 24 * HOUR;
    // 30 hours of a counter every 30 s (µs jitter), with a gap, a reset and a 32-bit wrap;
    // a gauge; a text leaf.
    let mut batch = Vec::new();
    let mut counter: u64 = 4_294_000_000;
    for i in 0..30 * 120 {
        let ts = T0 + i * 30 * S + (i * 7_919 % 997) * US;
        if (500..540).contains(&i) {
            continue;
        }
        counter = match i {
            1_000 => 17,
            _ => (counter + 1_000 + (i as u64 % 5) * 7) % (1 << 32),
        };
        batch.push(sample("leaf1", "/c", ts, Value::Uint(counter)));
        batch.push(sample("leaf1", "/g", ts, Value::Int(i % 37 - 9)));
        batch.push(sample("leaf1", "/t", ts, Value::String("up".into())));
    }
    for chunk in batch.chunks(3_000) {
        store.write_samples(chunk).await.expect("write");
    }
    let steps = |p: &'static str, step: TimestampNs| {
        let store = store.clone();
        async move {
            store
                .range_step(&key("leaf1"), &path(p), T0, T0 + DAY - 1, step)
                .await
                .expect("step")
        }
    };
    let mut before = Vec::new();
    for p in ["/c", "/g"] {
        for step in [60 * S, 5 * 60 * S, HOUR] {
            before.push(steps(p, step).await);
        }
    }
    assert_eq!(
        before[0].iter().filter(|b| b.stats.is_none()).count(),
        20,
        "the gap"
    );
    let retention = crate::Retention::default();
    let sealed = store
        .maintain(T0 + 30 * HOUR, &retention)
        .await
        .expect("maintain");
    // Sealed up to T0 + 28 h, from 48 hours back; every counted minute is in a rollup.
    assert_eq!(sealed.compressed_hours, 48, "{sealed:?}");
    assert_eq!(sealed.rolled_up_hours, 2 * 24, "/c and /g, day 0");
    let after = async {
        let mut out = Vec::new();
        for p in ["/c", "/g"] {
            for step in [60 * S, 5 * 60 * S, HOUR] {
                out.push(steps(p, step).await);
            }
        }
        out
    };
    assert_eq!(after.await, before, "rollups answer as the raw samples did");
    // Eight days later day 0's raw samples are gone; minutes and hours still answer.
    store
        .maintain(T0 + 8 * DAY, &retention)
        .await
        .expect("expire raw");
    let day0 = store
        .range(&key("leaf1"), &path("/c"), T0, T0 + DAY - 1)
        .await
        .expect("range");
    assert!(day0.is_empty(), "day 0 expired");
    let mut out = Vec::new();
    for p in ["/c", "/g"] {
        for step in [60 * S, 5 * 60 * S, HOUR] {
            out.push(steps(p, step).await);
        }
    }
    assert_eq!(out, before);
    // Steps the rollups cannot serve exactly (30 s, or a start off the minute) read raw
    // samples: none left.
    let raw = store
        .range_step(&key("leaf1"), &path("/c"), T0 + S, T0 + DAY - 1, HOUR)
        .await
        .expect("step");
    assert!(raw.iter().all(|b| b.stats.is_none()));
    // 91 days on, the minutes are gone too; 2 years on, the hours.
    store
        .maintain(T0 + 91 * DAY, &retention)
        .await
        .expect("expire minutes");
    assert!(steps("/c", 60 * S).await.iter().all(|b| b.stats.is_none()));
    assert_eq!(steps("/c", HOUR).await, before[2]);
    store
        .maintain(T0 + 762 * DAY, &retention)
        .await
        .expect("expire hours");
    assert!(steps("/c", HOUR).await.iter().all(|b| b.stats.is_none()));
}

pub(crate) async fn claims_never_go_back(store: Arc<dyn Store>) {
    let d = key("leaf1");
    let claim = |owner: &'static str, epoch: u64| {
        let (store, d) = (store.clone(), d.clone());
        async move { store.claim(&d, owner, epoch).await.expect("claim") }
    };
    let c = claim("collector-a", 1).await;
    assert_eq!(
        (c.granted, c.epoch, c.owner.as_deref()),
        (true, 1, Some("collector-a"))
    );
    let c = claim("collector-b", 3).await;
    assert_eq!(
        (c.granted, c.epoch, c.owner.as_deref()),
        (true, 3, Some("collector-b"))
    );
    // An older epoch is refused and says who holds the device now.
    let c = claim("collector-a", 2).await;
    assert_eq!(
        (c.granted, c.epoch, c.owner.as_deref()),
        (false, 3, Some("collector-b"))
    );
    // The same epoch again (a retried claim) is granted.
    let c = claim("collector-b", 3).await;
    assert!(c.granted);
    // A claim creates an unknown device.
    let new = store
        .claim(&key("leaf9"), "collector-a", 0)
        .await
        .expect("claim");
    assert!(new.granted);
    assert!(store.device(&key("leaf9")).await.expect("read").is_some());
    assert!(matches!(
        store.claim(&d, "x", u64::MAX).await,
        Err(crate::Error::EpochTooLarge(_))
    ));
}

pub(crate) async fn fenced_writes_refuse_stale_epochs(store: Arc<dyn Store>) {
    // leaf1 moved to another collector at epoch 2; this writer still holds epoch 1.
    assert!(
        store
            .claim(&key("leaf1"), "new", 2)
            .await
            .expect("claim")
            .granted
    );
    let batch = vec![
        sample("leaf1", "/a", T0, Value::Uint(1)),
        sample("leaf2", "/a", T0, Value::Uint(2)),
        sample("leaf1", "/b", T0, Value::Uint(3)),
        sample("leaf3", "/a", T0, Value::Uint(4)),
    ];
    let fence: crate::Fence = [(key("leaf1"), 1), (key("leaf2"), 0)].into_iter().collect();
    let report = store.write_fenced(&batch, &fence).await.expect("write");
    assert_eq!(
        (report.written, report.duplicates, report.fenced),
        (2, 0, 2)
    );
    assert_eq!(report.fenced_devices, vec![key("leaf1")]);
    assert!(all_points(&store, "leaf1", "/a").await.is_empty());
    assert_eq!(all_points(&store, "leaf2", "/a").await.len(), 1);
    assert_eq!(
        all_points(&store, "leaf3", "/a").await.len(),
        1,
        "not fenced"
    );
    // The new owner, holding epoch 2, writes.
    let fence: crate::Fence = [(key("leaf1"), 2)].into_iter().collect();
    let report = store
        .write_fenced(&batch[..1], &fence)
        .await
        .expect("write");
    assert_eq!((report.written, report.fenced), (1, 0));
    // Only epochs newer than the fence's refuse: a fence ahead of the store writes too.
    let fence: crate::Fence = [(key("leaf1"), 5)].into_iter().collect();
    let report = store
        .write_fenced(&batch[2..3], &fence)
        .await
        .expect("write");
    assert_eq!((report.written, report.fenced), (1, 0));
}

pub(crate) async fn writes_are_idempotent(store: Arc<dyn Store>) {
    let batch = counters("leaf1", 50);
    assert_eq!(
        store.write_samples(&batch).await.expect("write"),
        report(50, 0)
    );
    let p = "/interfaces/interface[name=Ethernet3]/in-octets";
    let before = all_points(&store, "leaf1", p).await;
    assert_eq!(before.len(), 10);
    let series_before = store.series(&key("leaf1")).await.expect("series");

    assert_eq!(
        store.write_samples(&batch).await.expect("rewrite"),
        report(0, 50)
    );
    assert_eq!(all_points(&store, "leaf1", p).await, before);
    assert_eq!(
        store.series(&key("leaf1")).await.expect("series"),
        series_before
    );

    // Half old, half new.
    let mut mixed = counters("leaf1", 60);
    mixed.drain(..25);
    assert_eq!(
        store.write_samples(&mixed).await.expect("mixed"),
        report(10, 25)
    );
    assert_eq!(store.write_samples(&[]).await.expect("empty"), report(0, 0));
}

pub(crate) async fn duplicates_within_a_batch_keep_the_first(store: Arc<dyn Store>) {
    let batch = [
        sample("leaf1", "/x", T0, Value::Int(1)),
        sample("leaf1", "/x", T0, Value::Int(2)),
        sample("leaf1", "/x", T0 + US, Value::Int(3)),
    ];
    assert_eq!(
        store.write_samples(&batch).await.expect("write"),
        report(2, 1)
    );
    let points = all_points(&store, "leaf1", "/x").await;
    let values: Vec<&Value> = points.iter().map(|p| &p.value).collect();
    assert_eq!(values, [&Value::Int(1), &Value::Int(3)]);
}

/// The newest sample wins even when writers store the last value only now and then
/// (PostgreSQL rewrites it once a minute per series; readers look for newer samples).
pub(crate) async fn series_show_samples_written_in_quick_succession(store: Arc<dyn Store>) {
    let second = 1_000_000_000;
    for i in 0..5 {
        let batch = [sample(
            "leaf1",
            "/c",
            T0 + i * second,
            Value::Uint(i as u64),
        )];
        store.write_samples(&batch).await.expect("write");
        let series = store.series(&key("leaf1")).await.expect("series");
        assert_eq!(series.len(), 1);
        assert_eq!(
            (series[0].last_ts, &series[0].last_value),
            (T0 + i * second, &Value::Uint(i as u64)),
            "after write {i}"
        );
    }
    // An older sample arriving late changes nothing.
    let late = [sample("leaf1", "/c", T0 - second, Value::Uint(99))];
    store.write_samples(&late).await.expect("write");
    let series = store.series(&key("leaf1")).await.expect("series");
    assert_eq!(series[0].last_value, Value::Uint(4));
    // Two minutes later: stored again, and still the newest.
    let later = [sample("leaf1", "/c", T0 + 120 * second, Value::Uint(7))];
    store.write_samples(&later).await.expect("write");
    let series = store.series(&key("leaf1")).await.expect("series");
    assert_eq!(
        (series[0].last_ts, &series[0].last_value),
        (T0 + 120 * second, &Value::Uint(7))
    );
}

pub(crate) async fn series_list_their_last_values(store: Arc<dyn Store>) {
    let batch = [
        sample(
            "spine1",
            "/system/state/hostname",
            T0,
            Value::String("spine1".into()),
        ),
        sample("spine1", "/b/counter", T0 + 2 * US, Value::Uint(20)),
        sample("spine1", "/b/counter", T0 + 3 * US, Value::Uint(30)),
        sample("spine1", "/b/counter", T0 + US, Value::Uint(10)),
        sample("spine1", "openconfig:/a/up", T0 + 5 * US, Value::Bool(true)),
        sample("spine1", "/b/counter[k=v]", T0, Value::Float(0.5)),
        sample("spine2", "/b/counter", T0 + 9 * US, Value::Uint(99)),
    ];
    store.write_samples(&batch).await.expect("write");
    let series = store.series(&key("spine1")).await.expect("series");
    let listed: Vec<(String, TimestampNs, Value)> = series
        .into_iter()
        .map(|s| (s.path.to_string(), s.last_ts, s.last_value))
        .collect();
    // Ordered by the canonical path string, byte by byte.
    assert_eq!(
        listed,
        [
            ("/b/counter".to_owned(), T0 + 3 * US, Value::Uint(30)),
            ("/b/counter[k=v]".to_owned(), T0, Value::Float(0.5)),
            (
                "/system/state/hostname".to_owned(),
                T0,
                Value::String("spine1".into())
            ),
            (
                "openconfig:/a/up".to_owned(),
                T0 + 5 * US,
                Value::Bool(true)
            ),
        ]
    );
    let spine1 = store
        .device(&key("spine1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(spine1.series, 4);
    assert_eq!(spine1.last_sample, Some(T0 + 5 * US));
    let devices = store.devices().await.expect("devices");
    let summary: Vec<(&str, i64, Option<TimestampNs>)> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.series, d.last_sample))
        .collect();
    assert_eq!(
        summary,
        [
            ("spine1", 4, Some(T0 + 5 * US)),
            ("spine2", 1, Some(T0 + 9 * US))
        ]
    );
}

pub(crate) async fn older_samples_do_not_move_last_values(store: Arc<dyn Store>) {
    let newer = [sample("leaf1", "/x", T0 + 10 * US, Value::Int(10))];
    store.write_samples(&newer).await.expect("write");
    let late = [
        sample("leaf1", "/x", T0 + 5 * US, Value::Int(5)),
        sample("leaf1", "/y", T0, Value::Int(0)),
    ];
    assert_eq!(
        store.write_samples(&late).await.expect("late"),
        report(2, 0)
    );
    let series = store.series(&key("leaf1")).await.expect("series");
    assert_eq!(series[0].last_ts, T0 + 10 * US);
    assert_eq!(series[0].last_value, Value::Int(10));
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(device.last_sample, Some(T0 + 10 * US));
    // The late sample is stored all the same.
    assert_eq!(all_points(&store, "leaf1", "/x").await.len(), 2);
}

pub(crate) async fn a_series_keeps_values_of_other_kinds(store: Arc<dyn Store>) {
    let batch = [
        sample("leaf1", "/x", T0, Value::Uint(7)),
        sample("leaf1", "/x", T0 + US, Value::Float(1.5)),
        sample("leaf1", "/x", T0 + 2 * US, Value::String("n/a".into())),
        sample("leaf1", "/x", T0 + 3 * US, Value::Int(8)),
    ];
    store.write_samples(&batch).await.expect("write");
    let values: Vec<Value> = all_points(&store, "leaf1", "/x")
        .await
        .into_iter()
        .map(|p| p.value)
        .collect();
    // Whole numbers read back as the series kind (that of the first value).
    assert_eq!(
        values,
        [
            Value::Uint(7),
            Value::Float(1.5),
            Value::String("n/a".into()),
            Value::Uint(8)
        ]
    );
}

fn event(device: &str, state: DeviceState, error: Option<&str>, ts: TimestampNs) -> DeviceEvent {
    DeviceEvent {
        device: key(device),
        state,
        error: error.map(str::to_owned),
        ts,
    }
}

pub(crate) async fn record_event_is_reflected_in_device(store: Arc<dyn Store>) {
    store
        .upsert_devices(&[info("leaf1", "10.0.0.1:57400")])
        .await
        .expect("upsert");
    let get = || async {
        let device = store.device(&key("leaf1")).await.expect("device");
        let device = device.expect("known");
        (device.state, device.last_error, device.state_since)
    };

    let connecting = event("leaf1", DeviceState::Connecting, None, T0);
    store.record_event(&connecting).await.expect("event");
    assert_eq!(get().await, (DeviceState::Connecting, None, Some(T0)));

    let synced = event("leaf1", DeviceState::Synced, None, T0 + US);
    store.record_event(&synced).await.expect("event");
    assert_eq!(get().await, (DeviceState::Synced, None, Some(T0 + US)));

    // The same state again: still synced since the first time.
    let again = event("leaf1", DeviceState::Synced, None, T0 + 2 * US);
    store.record_event(&again).await.expect("event");
    assert_eq!(get().await, (DeviceState::Synced, None, Some(T0 + US)));

    let down = event(
        "leaf1",
        DeviceState::Unreachable,
        Some("connection refused"),
        T0 + 3 * US,
    );
    store.record_event(&down).await.expect("event");
    let expected = (
        DeviceState::Unreachable,
        Some("connection refused".to_owned()),
        Some(T0 + 3 * US),
    );
    assert_eq!(get().await, expected);
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(
        device.address, "10.0.0.1:57400",
        "events leave the address alone"
    );

    // An event for an unknown device creates it.
    let new = event("leaf9", DeviceState::Connecting, None, T0);
    store.record_event(&new).await.expect("event");
    let leaf9 = store
        .device(&key("leaf9"))
        .await
        .expect("device")
        .expect("created");
    assert_eq!(
        (leaf9.address.as_str(), leaf9.state),
        ("", DeviceState::Connecting)
    );
}

pub(crate) async fn late_events_do_not_change_the_state(store: Arc<dyn Store>) {
    let synced = event("leaf1", DeviceState::Synced, None, T0 + 10 * US);
    store.record_event(&synced).await.expect("event");
    let late = event("leaf1", DeviceState::Unreachable, Some("timeout"), T0);
    store.record_event(&late).await.expect("late event");
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(
        (device.state, device.last_error, device.state_since),
        (DeviceState::Synced, None, Some(T0 + 10 * US))
    );
}

pub(crate) async fn unknown_device_is_none(store: Arc<dyn Store>) {
    store
        .write_samples(&[sample("leaf1", "/x", T0, Value::Int(1))])
        .await
        .expect("write");
    assert_eq!(store.device(&key("nope")).await.expect("device"), None);
    assert!(store.series(&key("nope")).await.expect("series").is_empty());
    assert!(all_points(&store, "nope", "/x").await.is_empty());
    assert!(all_points(&store, "leaf1", "/y").await.is_empty());
}

pub(crate) async fn range_bounds_are_inclusive_and_ordered(store: Arc<dyn Store>) {
    // Written out of order, across two batches, beside a neighbour series.
    let ts = |i: i64| T0 + i * US;
    let first: Vec<Sample> = [7, 1, 9, 3, 5]
        .into_iter()
        .map(|i| sample("leaf1", "/x", ts(i), Value::Int(i)))
        .collect();
    let second: Vec<Sample> = [2, 10, 6, 4, 8]
        .into_iter()
        .map(|i| sample("leaf1", "/x", ts(i), Value::Int(i)))
        .chain([sample("leaf1", "/y", ts(5), Value::Int(-1))])
        .collect();
    store.write_samples(&first).await.expect("write");
    store.write_samples(&second).await.expect("write");

    let range = |from: TimestampNs, to: TimestampNs| {
        let store = store.clone();
        async move {
            let points = store
                .range(&key("leaf1"), &path("/x"), from, to)
                .await
                .expect("range");
            points
                .into_iter()
                .map(|p| {
                    assert_eq!(p.value, Value::Int((p.ts - T0) / US), "value matches ts");
                    (p.ts - T0) / US
                })
                .collect::<Vec<i64>>()
        }
    };
    assert_eq!(range(ts(3), ts(7)).await, [3, 4, 5, 6, 7]);
    assert_eq!(range(ts(3) + 1, ts(7) - 1).await, [4, 5, 6]);
    assert_eq!(range(ts(5), ts(5)).await, [5]);
    assert_eq!(range(ts(7), ts(3)).await, Vec::<i64>::new());
    assert_eq!(range(ts(11), ts(20)).await, Vec::<i64>::new());
    assert_eq!(
        range(TimestampNs::MIN, TimestampNs::MAX).await,
        (1..=10).collect::<Vec<i64>>()
    );
}

pub(crate) async fn ten_thousand_samples_in_one_call(store: Arc<dyn Store>) {
    // 2 devices x 50 paths x 100 timestamps.
    let samples: Vec<Sample> = (0..10_000_i64)
        .map(|i| {
            let device = if i % 2 == 0 { "leaf1" } else { "leaf2" };
            let p = format!(
                "/interfaces/interface[name=eth{}]/counters/in-octets",
                (i / 2) % 50
            );
            sample(device, &p, T0 + (i / 100) * US, Value::Uint(i as u64))
        })
        .collect();
    assert_eq!(
        store.write_samples(&samples).await.expect("write"),
        report(10_000, 0)
    );
    let devices = store.devices().await.expect("devices");
    let counts: Vec<(&str, i64)> = devices
        .iter()
        .map(|d| (d.name.as_str(), d.series))
        .collect();
    assert_eq!(counts, [("leaf1", 50), ("leaf2", 50)]);
    let points = all_points(
        &store,
        "leaf2",
        "/interfaces/interface[name=eth7]/counters/in-octets",
    )
    .await;
    assert_eq!(points.len(), 100);
    assert!(points.windows(2).all(|w| w[0].ts < w[1].ts));
    assert_eq!(
        store.write_samples(&samples).await.expect("rewrite"),
        report(0, 10_000)
    );
}

pub(crate) async fn concurrent_overlapping_writes(store: Arc<dyn Store>) {
    // Two owners of one device during a handoff write overlapping batches at once.
    let old_owner = counters("leaf1", 400);
    let new_owner: Vec<Sample> = counters("leaf1", 600).into_iter().skip(200).rev().collect();
    let (a, b) = tokio::join!(
        store.write_samples(&old_owner),
        store.write_samples(&new_owner)
    );
    let (a, b) = (a.expect("old owner"), b.expect("new owner"));
    assert_eq!(a.written + b.written, 600);
    assert_eq!(a.duplicates + b.duplicates, 200);
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(device.series, 5);
    assert_eq!(device.last_sample, Some(T0 + 599 * US));
}

pub(crate) async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

fn health(device: &str, expected: u64) -> HealthReport {
    HealthReport {
        device: key(device),
        health: serde_json::json!({
            "device": device,
            "state": "synced",
            "lastError": null,
            "encoding": "proto",
            "quirks": ["device refused ON_CHANGE; sampling every 10s instead"],
            "reconnects": 2,
            "bytesReceived": 123_456_789_u64,
            "subscriptions": [{
                "path": "/interfaces/interface[name=*]/state/counters",
                "intervalMs": 1000,
                "expected": expected,
                "received": expected - 1,
                "missing": 1,
                "gaps": 1,
            }],
            "text": "naïve \u{1F600} \"quoted\"",
        }),
    }
}

pub(crate) async fn health_round_trips(store: Arc<dyn Store>) {
    store
        .upsert_devices(&[info("leaf1", "10.0.0.1:57400")])
        .await
        .expect("upsert");
    let before = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!((before.health, before.health_at), (None, None));
    store
        .record_health_batch(&[], T0)
        .await
        .expect("empty batch");

    let leaf1 = health("leaf1", 10);
    store
        .record_health(&leaf1.device, &leaf1.health, T0 + 5 * US)
        .await
        .expect("record");
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(device.health.as_ref(), Some(&leaf1.health));
    assert_eq!(device.health_at, Some(T0 + 5 * US));
    // The listing carries it too, and recording health leaves the rest alone.
    let listed = store.devices().await.expect("devices");
    assert_eq!(listed, vec![device.clone()]);
    assert_eq!(device.address, "10.0.0.1:57400");
    assert_eq!(device.state, DeviceState::Pending);

    // NUL cannot be stored (PostgreSQL's jsonb refuses it): replaced as in text values.
    let nul = serde_json::json!({"lastError": "bad\u{0}byte", "k\u{0}": 1});
    store
        .record_health(&key("leaf1"), &nul, T0 + 6 * US)
        .await
        .expect("nul");
    let device = store
        .device(&key("leaf1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(
        device.health,
        Some(serde_json::json!({"lastError": "bad\u{FFFD}byte", "k\u{FFFD}": 1}))
    );
}

pub(crate) async fn newer_health_overwrites_older_does_not(store: Arc<dyn Store>) {
    let expected = |d: &crate::DeviceSummary| {
        d.health.as_ref().expect("health")["subscriptions"][0]["expected"].as_u64()
    };
    store
        .record_health_batch(&[health("leaf1", 10), health("leaf2", 20)], T0 + 10 * US)
        .await
        .expect("first");
    // Newer replaces; of two reports for one device in a batch the last wins.
    store
        .record_health_batch(&[health("leaf1", 11), health("leaf1", 12)], T0 + 20 * US)
        .await
        .expect("newer");
    // Older (a late writer) is ignored; the same instant replaces.
    store
        .record_health_batch(&[health("leaf1", 1), health("leaf2", 21)], T0 + 10 * US)
        .await
        .expect("older and same instant");
    let devices = store.devices().await.expect("devices");
    let seen: Vec<(&str, Option<u64>, Option<TimestampNs>)> = devices
        .iter()
        .map(|d| (d.name.as_str(), expected(d), d.health_at))
        .collect();
    assert_eq!(
        seen,
        [
            ("leaf1", Some(12), Some(T0 + 20 * US)),
            ("leaf2", Some(21), Some(T0 + 10 * US)),
        ]
    );
}

pub(crate) async fn health_creates_unknown_devices(store: Arc<dyn Store>) {
    // Like samples and events: the collector may report before the device is registered.
    store
        .record_health_batch(&[health("new1", 3)], T0)
        .await
        .expect("record");
    let device = store
        .device(&key("new1"))
        .await
        .expect("device")
        .expect("created");
    assert_eq!(device.address, "");
    assert_eq!(device.state, DeviceState::Pending);
    assert_eq!(device.series, 0);
    assert!(device.health.is_some());
    // Registering it afterwards keeps the health.
    store
        .upsert_devices(&[info("new1", "192.0.2.1:6030")])
        .await
        .expect("upsert");
    let device = store
        .device(&key("new1"))
        .await
        .expect("device")
        .expect("known");
    assert_eq!(device.address, "192.0.2.1:6030");
    assert_eq!(device.health, Some(health("new1", 3).health));
}

fn cli(device: &str, command: &str, ts: TimestampNs, output: &str) -> crate::CliOutput {
    crate::CliOutput {
        device: key(device),
        command: command.to_owned(),
        ts,
        output: output.to_owned(),
        truncated: false,
        track_changes: true,
    }
}

const RUN: &str = "show running-config";

/// A running config of `n` interfaces, the one named `changed` with MTU 1500.
fn config(n: usize, changed: Option<usize>) -> String {
    let mut text = String::from("hostname leaf1\n");
    for i in 0..n {
        let mtu = if Some(i) == changed { 1500 } else { 9000 };
        text.push_str(&format!("interface Ethernet{i}\n   mtu {mtu}\n!\n"));
    }
    text
}

pub(crate) async fn cli_first_output_is_no_change(store: Arc<dyn Store>) {
    assert_eq!(
        store.cli_output(&key("leaf1"), RUN).await.expect("latest"),
        None
    );
    let first = cli("leaf1", RUN, T0, &config(4, None));
    let change = store.record_cli_output(&first).await.expect("record");
    assert_eq!(change, None);
    assert_eq!(
        store.cli_output(&key("leaf1"), RUN).await.expect("latest"),
        Some(first)
    );
    assert_eq!(
        store
            .cli_output(&key("leaf1"), "show version")
            .await
            .expect("other command"),
        None
    );
    // The device was created, as events and samples create it.
    let device = store.device(&key("leaf1")).await.expect("device");
    assert!(device.is_some());
    assert!(
        store
            .cli_changes(&key("leaf1"), i64::MIN, 10)
            .await
            .expect("changes")
            .is_empty()
    );
}

pub(crate) async fn cli_same_output_moves_the_time_only(store: Arc<dyn Store>) {
    let text = config(4, None);
    store
        .record_cli_output(&cli("leaf1", RUN, T0, &text))
        .await
        .expect("first");
    let again = crate::CliOutput {
        truncated: true,
        track_changes: true,
        ..cli("leaf1", RUN, T0 + 60_000_000 * US, &text)
    };
    assert_eq!(store.record_cli_output(&again).await.expect("again"), None);
    let latest = store
        .cli_output(&key("leaf1"), RUN)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(latest.ts, T0 + 60_000_000 * US, "last seen moves");
    assert_eq!(latest.output, text);
    assert!(!latest.truncated, "only the time moves");
    assert!(
        store
            .cli_changes(&key("leaf1"), i64::MIN, 10)
            .await
            .expect("changes")
            .is_empty()
    );
}

pub(crate) async fn cli_changed_output_records_a_diff(store: Arc<dyn Store>) {
    let (t1, t2, t3) = (T0, T0 + 30 * US, T0 + 90 * US);
    for ts in [t1, t2] {
        store
            .record_cli_output(&cli("leaf1", RUN, ts, &config(10, None)))
            .await
            .expect("unchanged");
    }
    let new = cli("leaf1", RUN, t3, &config(10, Some(4)));
    let change = store
        .record_cli_output(&new)
        .await
        .expect("record")
        .expect("a change");
    assert_eq!(change.device, key("leaf1"));
    assert_eq!(change.command, RUN);
    assert_eq!((change.ts, change.previous_ts), (t3, t2), "since last seen");
    assert_eq!((change.added, change.removed), (1, 1));
    let expected = [
        "--- show running-config\t2026-01-01T00:00:00.000030000Z",
        "+++ show running-config\t2026-01-01T00:00:00.000090000Z",
        "@@ -12,7 +12,7 @@",
        "    mtu 9000",
        " !",
        " interface Ethernet4",
        "-   mtu 9000",
        "+   mtu 1500",
        " !",
        " interface Ethernet5",
        "    mtu 9000",
        "",
    ];
    assert_eq!(change.diff, expected.join("\n"));
    assert_eq!(
        store.cli_output(&key("leaf1"), RUN).await.expect("latest"),
        Some(new)
    );
    let stored = store
        .cli_changes(&key("leaf1"), i64::MIN, 10)
        .await
        .expect("changes");
    assert_eq!(stored, vec![change]);
}

pub(crate) async fn cli_late_output_is_ignored(store: Arc<dyn Store>) {
    let latest = cli("leaf1", RUN, T0 + 10 * US, &config(2, None));
    store.record_cli_output(&latest).await.expect("latest");
    let late = cli("leaf1", RUN, T0, &config(2, Some(1)));
    assert_eq!(store.record_cli_output(&late).await.expect("late"), None);
    assert_eq!(
        store.cli_output(&key("leaf1"), RUN).await.expect("latest"),
        Some(latest.clone())
    );
    assert!(
        store
            .cli_changes(&key("leaf1"), i64::MIN, 10)
            .await
            .expect("changes")
            .is_empty()
    );
    // Another command of the same device is not compared with it.
    let other = cli("leaf1", "show version", T0, "EOS 4.30\n");
    assert_eq!(store.record_cli_output(&other).await.expect("other"), None);
}

pub(crate) async fn cli_line_ending_noise_is_no_change(store: Arc<dyn Store>) {
    let lf = "Device ID  Local Intf\nspine1     Et1\nspine2     Et2\n";
    store
        .record_cli_output(&cli("leaf1", "show lldp neighbors", T0, lf))
        .await
        .expect("first");
    let crlf = "Device ID  Local Intf   \r\nspine1     Et1\r\nspine2     Et2\r\n";
    let change = store
        .record_cli_output(&cli("leaf1", "show lldp neighbors", T0 + US, crlf))
        .await
        .expect("crlf");
    assert_eq!(change, None);
    let latest = store
        .cli_output(&key("leaf1"), "show lldp neighbors")
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!((latest.ts, latest.output.as_str()), (T0 + US, lf));
    // A real change still is one.
    let gone = "Device ID  Local Intf\r\nspine1     Et1\r\n";
    let change = store
        .record_cli_output(&cli("leaf1", "show lldp neighbors", T0 + 2 * US, gone))
        .await
        .expect("neighbour gone")
        .expect("a change");
    assert_eq!((change.added, change.removed), (0, 1));
    assert!(
        change.diff.contains("\n-spine2     Et2\n"),
        "{}",
        change.diff
    );
}

pub(crate) async fn cli_changes_are_newest_first_and_limited(store: Arc<dyn Store>) {
    // Five changes of one command, one of another, one of another device.
    for i in 0..6 {
        store
            .record_cli_output(&cli(
                "leaf1",
                RUN,
                T0 + i * 10 * US,
                &config(6, Some(i as usize)),
            ))
            .await
            .expect("record");
    }
    for (i, text) in ["v1\n", "v2\n"].iter().enumerate() {
        store
            .record_cli_output(&cli(
                "leaf1",
                "show version",
                T0 + 25 * US + i as i64 * 20 * US,
                text,
            ))
            .await
            .expect("version");
        store
            .record_cli_output(&cli("leaf2", RUN, T0 + i as i64 * 10 * US, text))
            .await
            .expect("leaf2");
    }
    let all = store
        .cli_changes(&key("leaf1"), i64::MIN, 100)
        .await
        .expect("changes");
    let seen: Vec<(TimestampNs, &str)> = all
        .iter()
        .map(|c| ((c.ts - T0) / US, c.command.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (50, RUN),
            (45, "show version"),
            (40, RUN),
            (30, RUN),
            (20, RUN),
            (10, RUN)
        ]
    );
    assert!(all.iter().all(|c| c.device == key("leaf1")));
    let newest = store
        .cli_changes(&key("leaf1"), i64::MIN, 2)
        .await
        .expect("limited");
    assert_eq!(newest, all[..2].to_vec());
    let since = store
        .cli_changes(&key("leaf1"), T0 + 30 * US, 100)
        .await
        .expect("since");
    assert_eq!(since, all[..4].to_vec(), "since is inclusive");
    assert!(
        store
            .cli_changes(&key("nobody"), i64::MIN, 10)
            .await
            .expect("unknown device")
            .is_empty()
    );
}

pub(crate) async fn cli_oversize_output_and_bad_queries_are_refused(store: Arc<dyn Store>) {
    use crate::{CliError, Error, cli::MAX_CHANGES_LIMIT, cli::MAX_OUTPUT_BYTES};
    let fits = "x".repeat(MAX_OUTPUT_BYTES);
    store
        .record_cli_output(&cli("leaf1", RUN, T0, &fits))
        .await
        .expect("exactly the maximum is stored");
    let big = cli("leaf1", RUN, T0 + US, &"y".repeat(MAX_OUTPUT_BYTES + 1));
    match store.record_cli_output(&big).await {
        Err(Error::Cli(CliError::OutputTooLarge { size, .. })) => {
            assert_eq!(size, MAX_OUTPUT_BYTES + 1)
        }
        other => panic!("oversize output gave {other:?}"),
    }
    let latest = store
        .cli_output(&key("leaf1"), RUN)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!((latest.ts, latest.output.len()), (T0, MAX_OUTPUT_BYTES));
    match store.record_cli_output(&cli("leaf1", "", T0, "x")).await {
        Err(Error::Cli(CliError::Command(_))) => {}
        other => panic!("empty command gave {other:?}"),
    }
    for (limit, expected) in [
        (0, CliError::NoLimit),
        (
            MAX_CHANGES_LIMIT + 1,
            CliError::LimitTooLarge(MAX_CHANGES_LIMIT + 1),
        ),
    ] {
        match store.cli_changes(&key("leaf1"), i64::MIN, limit).await {
            Err(Error::Cli(e)) => assert_eq!(e, expected),
            other => panic!("limit {limit} gave {other:?}"),
        }
    }
}

pub(crate) async fn cli_retention_removes_old_changes(store: Arc<dyn Store>) {
    let day = 86_400 * 1_000_000_000;
    for d in [0, 1, 2, 5, 9] {
        store
            .record_cli_output(&cli(
                "leaf1",
                RUN,
                T0 + d * day,
                &config(10, Some(d as usize)),
            ))
            .await
            .expect("record");
    }
    let before = store
        .cli_changes(&key("leaf1"), i64::MIN, 100)
        .await
        .expect("changes");
    let days: Vec<i64> = before.iter().map(|c| (c.ts - T0) / day).collect();
    assert_eq!(days, [9, 5, 2, 1]);
    // Ten days after T0, seven days of raw data are kept: the changes of days 5 and 9 stay.
    let now = T0 + 10 * day;
    let report = store
        .maintain(now, &crate::Retention::default())
        .await
        .expect("maintain");
    assert!(report.deleted >= 2, "{report:?}");
    let after = store
        .cli_changes(&key("leaf1"), i64::MIN, 100)
        .await
        .expect("changes");
    assert_eq!(after, before[..2].to_vec());
    // The latest output stays, as a series' last value does.
    let latest = store.cli_output(&key("leaf1"), RUN).await.expect("latest");
    assert_eq!(latest.map(|l| l.ts), Some(T0 + 9 * day));
}

pub(crate) async fn cli_nul_in_output_is_replaced(store: Arc<dyn Store>) {
    store
        .record_cli_output(&cli("leaf1", RUN, T0, "a\0b\n"))
        .await
        .expect("NUL is stored");
    let latest = store
        .cli_output(&key("leaf1"), RUN)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(latest.output, "a\u{FFFD}b\n");
    // The same output again, NUL and all, is no change.
    assert_eq!(
        store
            .record_cli_output(&cli("leaf1", RUN, T0 + US, "a\0b\n"))
            .await
            .expect("again"),
        None
    );
}

pub(crate) async fn cli_concurrent_outputs_of_one_command(store: Arc<dyn Store>) {
    // First outputs racing for the same (device, command) row: none fails, the newest
    // wins, and every change returned is the one stored.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let output = cli("leaf9", RUN, T0 + i * US, &config(8, Some(i as usize)));
                store.record_cli_output(&output).await
            })
        })
        .collect();
    let mut returned = Vec::new();
    for task in tasks {
        let change = task.await.expect("task").expect("record");
        returned.extend(change);
    }
    let latest = store
        .cli_output(&key("leaf9"), RUN)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(latest.ts, T0 + 7 * US);
    assert_eq!(latest.output, config(8, Some(7)));
    let mut stored = store
        .cli_changes(&key("leaf9"), i64::MIN, 100)
        .await
        .expect("changes");
    stored.sort_by_key(|c| c.ts);
    returned.sort_by_key(|c| c.ts);
    assert_eq!(stored, returned);
    assert!(stored.len() < 8, "the first output is no change");
}

pub(crate) async fn cli_untracked_output_is_kept_without_changes(store: Arc<dyn Store>) {
    let counters = |n: u64| crate::CliOutput {
        track_changes: false,
        ..cli(
            "leaf1",
            "show interfaces",
            T0 + n as i64 * US,
            &format!("{n} packets input\n"),
        )
    };
    store.record_cli_output(&counters(1)).await.expect("first");
    assert_eq!(
        store.record_cli_output(&counters(2)).await.expect("second"),
        None
    );
    let latest = store
        .cli_output(&key("leaf1"), "show interfaces")
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!(latest.output, "2 packets input\n", "the newest is kept");
    assert!(
        store
            .cli_changes(&key("leaf1"), i64::MIN, 10)
            .await
            .expect("changes")
            .is_empty(),
        "no change recorded"
    );
}

const LLDP: &str = "show lldp neighbors";
const LLDP_TEMPLATE: &str = "arista_eos_show_lldp_neighbors.textfsm";

/// An LLDP table row: local port, neighbour name, its port.
fn neighbour(local: &str, name: &str, port: &str) -> crate::SnapshotRow {
    let mut row = crate::SnapshotRow::new();
    for (column, value) in [
        ("LOCAL_INTERFACE", local),
        ("NEIGHBOR_NAME", name),
        ("NEIGHBOR_INTERFACE", port),
    ] {
        row.insert(
            column.to_owned(),
            serde_json::Value::String(value.to_owned()),
        );
    }
    row
}

/// A snapshot of `LLDP` on `device` at `ts` with `spines` neighbours, one per port.
fn lldp(device: &str, ts: TimestampNs, spines: usize) -> crate::CliSnapshot {
    crate::CliSnapshot {
        device: key(device),
        command: LLDP.to_owned(),
        template: LLDP_TEMPLATE.to_owned(),
        ts,
        last_seen: ts,
        rows: (1..=spines)
            .map(|i| neighbour(&format!("Ethernet{i}"), &format!("spine{i}"), "Ethernet7"))
            .collect(),
        truncated: false,
    }
}

pub(crate) async fn cli_first_snapshot_is_the_latest(store: Arc<dyn Store>) {
    use crate::SnapshotOutcome;
    assert_eq!(
        store
            .cli_snapshot(&key("leaf1"), LLDP)
            .await
            .expect("latest"),
        None
    );
    // Lists (TextFSM List values) and NUL in keys and strings.
    let mut first = lldp("leaf1", T0, 2);
    first.rows[0].insert(
        "CAPABILITIES".to_owned(),
        serde_json::json!(["B", "R\u{0}"]),
    );
    first.rows[1].insert("X\u{0}".to_owned(), serde_json::json!("a\u{0}b"));
    assert_eq!(
        store.record_cli_snapshot(&first).await.expect("record"),
        SnapshotOutcome::First
    );
    let latest = store
        .cli_snapshot(&key("leaf1"), LLDP)
        .await
        .expect("latest")
        .expect("stored");
    let mut expected = first.clone();
    expected.rows[0].insert(
        "CAPABILITIES".to_owned(),
        serde_json::json!(["B", "R\u{FFFD}"]),
    );
    expected.rows[1].remove("X\u{0}");
    expected.rows[1].insert("X\u{FFFD}".to_owned(), serde_json::json!("a\u{FFFD}b"));
    assert_eq!(latest, expected);
    // The same again, NUL and all, is no change.
    let again = crate::CliSnapshot {
        ts: T0 + US,
        last_seen: T0 + US,
        ..first.clone()
    };
    assert_eq!(
        store.record_cli_snapshot(&again).await.expect("again"),
        SnapshotOutcome::Unchanged
    );
    assert_eq!(
        store
            .cli_snapshot(&key("leaf1"), "show version")
            .await
            .expect("other command"),
        None
    );
    assert!(store.device(&key("leaf1")).await.expect("device").is_some());
    let history = store
        .cli_snapshots(&key("leaf1"), None, i64::MIN, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
}

pub(crate) async fn cli_equal_snapshot_moves_last_seen_only(store: Arc<dyn Store>) {
    use crate::SnapshotOutcome;
    store
        .record_cli_snapshot(&lldp("leaf1", T0, 3))
        .await
        .expect("first");
    // The same rows built in another key order are equal.
    let mut reordered = lldp("leaf1", T0 + 60 * US, 3);
    reordered.rows = reordered
        .rows
        .into_iter()
        .map(|row| row.into_iter().rev().collect())
        .collect();
    assert_eq!(
        store.record_cli_snapshot(&reordered).await.expect("again"),
        SnapshotOutcome::Unchanged
    );
    let latest = store
        .cli_snapshot(&key("leaf1"), LLDP)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!((latest.ts, latest.last_seen), (T0, T0 + 60 * US));
    assert_eq!(latest.rows, lldp("leaf1", T0, 3).rows);
    // Another template, or a cut table, with the same rows is a change.
    let other_template = crate::CliSnapshot {
        template: "ntc_show_lldp_neighbors.textfsm".to_owned(),
        ..lldp("leaf1", T0 + 61 * US, 3)
    };
    assert_eq!(
        store
            .record_cli_snapshot(&other_template)
            .await
            .expect("template"),
        SnapshotOutcome::Changed
    );
    let cut = crate::CliSnapshot {
        truncated: true,
        ..other_template.clone()
    };
    let cut = crate::CliSnapshot {
        ts: T0 + 62 * US,
        ..cut
    };
    assert_eq!(
        store.record_cli_snapshot(&cut).await.expect("cut"),
        SnapshotOutcome::Changed
    );
    let history = store
        .cli_snapshots(&key("leaf1"), Some(LLDP), i64::MIN, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 3, "{history:?}");
}

pub(crate) async fn cli_changed_snapshots_make_a_history(store: Arc<dyn Store>) {
    use crate::SnapshotOutcome;
    // 2 neighbours, unchanged, 1 (a link down), 2 again; and another command between.
    let t = |n: i64| T0 + n * 10 * US;
    let outcomes = [
        (lldp("leaf1", t(0), 2), SnapshotOutcome::First),
        (lldp("leaf1", t(1), 2), SnapshotOutcome::Unchanged),
        (lldp("leaf1", t(2), 1), SnapshotOutcome::Changed),
        (lldp("leaf1", t(4), 2), SnapshotOutcome::Changed),
    ];
    for (snapshot, expected) in &outcomes {
        assert_eq!(
            store.record_cli_snapshot(snapshot).await.expect("record"),
            *expected,
            "at {}",
            (snapshot.ts - T0) / US
        );
    }
    let version = crate::CliSnapshot {
        command: "show version".to_owned(),
        template: "arista_eos_show_version.textfsm".to_owned(),
        rows: vec![neighbour("-", "-", "-")],
        ..lldp("leaf1", t(3), 0)
    };
    store.record_cli_snapshot(&version).await.expect("version");
    store
        .record_cli_snapshot(&lldp("leaf2", t(5), 1))
        .await
        .expect("leaf2");

    let history = store
        .cli_snapshots(&key("leaf1"), Some(LLDP), i64::MIN, 10)
        .await
        .expect("history");
    let seen: Vec<(i64, i64, usize)> = history
        .iter()
        .map(|s| ((s.ts - T0) / US, (s.last_seen - T0) / US, s.rows.len()))
        .collect();
    assert_eq!(seen, [(40, 40, 2), (20, 20, 1), (0, 10, 2)]);
    assert!(
        history
            .iter()
            .all(|s| s.device == key("leaf1") && s.command == LLDP)
    );
    assert_eq!(
        store
            .cli_snapshot(&key("leaf1"), LLDP)
            .await
            .expect("latest"),
        Some(history[0].clone()),
        "the newest of the history is the latest"
    );
    // Every command of the device, newest first.
    let all = store
        .cli_snapshots(&key("leaf1"), None, i64::MIN, 10)
        .await
        .expect("all");
    let commands: Vec<(i64, &str)> = all
        .iter()
        .map(|s| ((s.ts - T0) / US, s.command.as_str()))
        .collect();
    assert_eq!(
        commands,
        [(40, LLDP), (30, "show version"), (20, LLDP), (0, LLDP)]
    );
    // Limited, and `since` applies to when a snapshot was last seen (inclusive).
    let newest = store
        .cli_snapshots(&key("leaf1"), None, i64::MIN, 2)
        .await
        .expect("limited");
    assert_eq!(newest, all[..2].to_vec());
    let since = store
        .cli_snapshots(&key("leaf1"), Some(LLDP), t(1), 10)
        .await
        .expect("since");
    assert_eq!(since, history, "the first was last seen at 10");
    let later = store
        .cli_snapshots(&key("leaf1"), Some(LLDP), t(1) + US, 10)
        .await
        .expect("since");
    assert_eq!(later, history[..2].to_vec());
    assert!(
        store
            .cli_snapshots(&key("nobody"), None, i64::MIN, 10)
            .await
            .expect("unknown device")
            .is_empty()
    );
}

pub(crate) async fn cli_late_snapshot_is_ignored(store: Arc<dyn Store>) {
    use crate::SnapshotOutcome;
    store
        .record_cli_snapshot(&lldp("leaf1", T0, 2))
        .await
        .expect("first");
    store
        .record_cli_snapshot(&lldp("leaf1", T0 + 20 * US, 2))
        .await
        .expect("seen again");
    // Older than when the latest was last seen, though newer than when it was first.
    assert_eq!(
        store
            .record_cli_snapshot(&lldp("leaf1", T0 + 10 * US, 1))
            .await
            .expect("late"),
        SnapshotOutcome::Late
    );
    let history = store
        .cli_snapshots(&key("leaf1"), Some(LLDP), i64::MIN, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].rows.len(), 2);
    // One of the same time as last seen is not late.
    assert_eq!(
        store
            .record_cli_snapshot(&lldp("leaf1", T0 + 20 * US, 1))
            .await
            .expect("same time"),
        SnapshotOutcome::Changed
    );
}

pub(crate) async fn cli_oversize_snapshot_and_bad_queries_are_refused(store: Arc<dyn Store>) {
    use crate::cli::{MAX_SNAPSHOT_BYTES, MAX_SNAPSHOT_ROWS, MAX_SNAPSHOTS_LIMIT, bound_rows};
    use crate::{CliError, Error};
    let mut many = lldp("leaf1", T0, 0);
    many.rows = (0..=MAX_SNAPSHOT_ROWS)
        .map(|_| crate::SnapshotRow::new())
        .collect();
    match store.record_cli_snapshot(&many).await {
        Err(Error::Cli(CliError::SnapshotTooLarge { rows, .. })) => {
            assert_eq!(rows, MAX_SNAPSHOT_ROWS + 1)
        }
        other => panic!("too many rows gave {other:?}"),
    }
    // Rows of about 1 KiB: a thousand and more do not fit in the byte bound.
    let wide = neighbour("Ethernet1", &"n".repeat(1000), "Ethernet1");
    let mut big = lldp("leaf1", T0, 0);
    big.rows = vec![wide; 1100];
    match store.record_cli_snapshot(&big).await {
        Err(Error::Cli(CliError::SnapshotTooLarge { bytes, .. })) => {
            assert!(bytes > MAX_SNAPSHOT_BYTES, "{bytes}")
        }
        other => panic!("too many bytes gave {other:?}"),
    }
    // Cut to fit, it is stored, and says so.
    let (rows, cut) = bound_rows(big.rows.clone());
    assert!(
        cut && rows.len() < 1100 && rows.len() > 900,
        "{}",
        rows.len()
    );
    let fitted = crate::CliSnapshot {
        rows: rows.clone(),
        truncated: cut,
        ..big
    };
    store.record_cli_snapshot(&fitted).await.expect("bounded");
    let latest = store
        .cli_snapshot(&key("leaf1"), LLDP)
        .await
        .expect("latest")
        .expect("stored");
    assert_eq!((latest.rows.len(), latest.truncated), (rows.len(), true));
    for (command, template) in [("", LLDP_TEMPLATE), ("show\nreload", LLDP_TEMPLATE)] {
        let bad = crate::CliSnapshot {
            command: command.to_owned(),
            template: template.to_owned(),
            ..lldp("leaf1", T0, 1)
        };
        match store.record_cli_snapshot(&bad).await {
            Err(Error::Cli(CliError::Command(_))) => {}
            other => panic!("command {command:?} gave {other:?}"),
        }
    }
    let no_template = crate::CliSnapshot {
        template: String::new(),
        ..lldp("leaf1", T0, 1)
    };
    match store.record_cli_snapshot(&no_template).await {
        Err(Error::Cli(CliError::Template(_))) => {}
        other => panic!("empty template gave {other:?}"),
    }
    for (limit, expected) in [
        (0, CliError::NoLimit),
        (
            MAX_SNAPSHOTS_LIMIT + 1,
            CliError::SnapshotLimitTooLarge(MAX_SNAPSHOTS_LIMIT + 1),
        ),
    ] {
        match store
            .cli_snapshots(&key("leaf1"), None, i64::MIN, limit)
            .await
        {
            Err(Error::Cli(e)) => assert_eq!(e, expected),
            other => panic!("limit {limit} gave {other:?}"),
        }
    }
}

pub(crate) async fn cli_snapshot_retention_keeps_the_latest(store: Arc<dyn Store>) {
    let day = 86_400 * 1_000_000_000;
    // Changes on days 0, 1, 2, 5; the day-5 table is seen again on day 6. Another command's
    // only snapshot, from day 0, is its latest.
    for (d, spines) in [(0, 1), (1, 2), (2, 3), (5, 4), (6, 4)] {
        store
            .record_cli_snapshot(&lldp("leaf1", T0 + d * day, spines))
            .await
            .expect("record");
    }
    let version = crate::CliSnapshot {
        command: "show version".to_owned(),
        ..lldp("leaf1", T0, 1)
    };
    store.record_cli_snapshot(&version).await.expect("version");
    // Ten days after T0, seven days of raw data are kept (cutoff: day 3). The day-2
    // snapshot was last seen on day 2: deleted; so are days 0 and 1.
    let report = store
        .maintain(T0 + 10 * day, &crate::Retention::default())
        .await
        .expect("maintain");
    assert!(report.deleted >= 3, "{report:?}");
    let left: Vec<(String, i64)> = store
        .cli_snapshots(&key("leaf1"), None, i64::MIN, 10)
        .await
        .expect("history")
        .into_iter()
        .map(|s| (s.command, (s.ts - T0) / day))
        .collect();
    assert_eq!(
        left,
        [(LLDP.to_owned(), 5), ("show version".to_owned(), 0)],
        "the latest of each command stays"
    );
    // Much later, every latest still stays.
    store
        .maintain(T0 + 100 * day, &crate::Retention::default())
        .await
        .expect("maintain");
    let latest = store
        .cli_snapshot(&key("leaf1"), LLDP)
        .await
        .expect("latest");
    assert_eq!(latest.map(|s| s.last_seen), Some(T0 + 6 * day));
    assert!(
        store
            .cli_snapshot(&key("leaf1"), "show version")
            .await
            .expect("latest")
            .is_some()
    );
}

pub(crate) async fn cli_concurrent_equal_snapshots_make_one_row(store: Arc<dyn Store>) {
    use crate::SnapshotOutcome;
    // Eight writers with the same table at once (two collectors during a handoff, say):
    // one row, first seen at the earliest recorded, and exactly one of them is the first.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_cli_snapshot(&lldp("leaf9", T0 + i * US, 2))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("record"));
    }
    let firsts = outcomes
        .iter()
        .filter(|o| **o == SnapshotOutcome::First)
        .count();
    assert_eq!(firsts, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| *o != SnapshotOutcome::Changed),
        "{outcomes:?}"
    );
    let history = store
        .cli_snapshots(&key("leaf9"), Some(LLDP), i64::MIN, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "{history:?}");
}
