//! Component tests: a real fleet on loopback, driven by the generated tonic gNMI client.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use model::Value;
use proto::gnmi::{
    self, Encoding, SubscribeRequest, SubscribeResponse, SubscriptionList, SubscriptionMode,
    g_nmi_client::GNmiClient, subscribe_request::Request as Outbound,
    subscribe_response::Response as Inbound, subscription_list::Mode,
};
use simulator::{Fleet, FleetConfig};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// Upper bound on any single wait for the simulator; generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(20);

async fn fleet(devices: usize) -> Result<Fleet> {
    Ok(Fleet::start(FleetConfig {
        devices,
        port: 0,
        seed: 11,
        ..FleetConfig::default()
    })
    .await?)
}

async fn client(fleet: &Fleet, index: usize) -> Result<GNmiClient<Channel>> {
    let addr = fleet.devices()[index].addr;
    Ok(GNmiClient::connect(format!("http://{addr}")).await?)
}

fn path(s: &str) -> Result<gnmi::Path> {
    let p: model::Path = s.parse()?;
    Ok(gnmi::Path::from(&p))
}

/// (full path, value) of every update of a notification.
fn leaves(n: &gnmi::Notification) -> Result<Vec<(String, Value)>> {
    n.update
        .iter()
        .map(|u| {
            let p = proto::full_path(n.prefix.as_ref(), u.path.as_ref())?;
            let v = u
                .val
                .as_ref()
                .and_then(proto::to_value)
                .with_context(|| format!("no value for {p}"))?;
            Ok((p.to_string(), v))
        })
        .collect()
}

/// Opens a Subscribe stream with `list`; the sender stays open for polls.
async fn subscribe(
    client: &mut GNmiClient<Channel>,
    list: SubscriptionList,
) -> Result<(mpsc::Sender<SubscribeRequest>, Streaming<SubscribeResponse>)> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(SubscribeRequest {
        request: Some(Outbound::Subscribe(list)),
        ..Default::default()
    })
    .await?;
    let stream = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

async fn next(stream: &mut Streaming<SubscribeResponse>) -> Result<Option<Inbound>> {
    let message = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("timed out waiting for the simulator")??;
    Ok(message.and_then(|m| m.response))
}

/// Leaves received up to and including the next sync_response.
async fn until_sync(stream: &mut Streaming<SubscribeResponse>) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    loop {
        match next(stream).await? {
            Some(Inbound::Update(n)) => out.extend(leaves(&n)?),
            Some(Inbound::SyncResponse(true)) => return Ok(out),
            other => bail!("unexpected response {other:?}"),
        }
    }
}

fn counter(leaves: &[(String, Value)], path: &str) -> Result<u64> {
    match leaves.iter().find(|(p, _)| p == path) {
        Some((_, Value::Uint(v))) => Ok(*v),
        other => bail!("{path}: expected a uint, got {other:?}"),
    }
}

fn in_octets(ifname: &str) -> String {
    format!("/interfaces/interface[name={ifname}]/state/counters/in-octets")
}

#[tokio::test]
async fn devices_have_their_own_addresses_and_names() -> Result<()> {
    let fleet = fleet(2).await?;
    let devices = fleet.devices();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].name, "sim-0001");
    assert_eq!(devices[1].name, "sim-0002");
    assert_eq!(devices[0].addr.ip().to_string(), "127.0.1.1");
    assert_eq!(devices[1].addr.ip().to_string(), "127.0.1.2");
    assert_ne!(devices[0].addr.port(), 0);
    assert_eq!(
        devices[0].interfaces,
        ["Ethernet1", "Ethernet2", "Ethernet3", "Ethernet4"]
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn capabilities_list_models_encodings_and_version() -> Result<()> {
    let fleet = fleet(2).await?;
    for index in 0..2 {
        let caps = client(&fleet, index)
            .await?
            .capabilities(gnmi::CapabilityRequest::default())
            .await?
            .into_inner();
        assert_eq!(caps.g_nmi_version, "0.10.0");
        assert!(
            caps.supported_models
                .iter()
                .any(|m| m.name == "openconfig-interfaces")
        );
        for e in [Encoding::Json, Encoding::JsonIetf, Encoding::Proto] {
            assert!(caps.supported_encodings.contains(&(e as i32)), "{e:?}");
        }
    }
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_returns_matching_leaves_in_the_requested_encoding() -> Result<()> {
    let fleet = fleet(2).await?;
    let mut c = client(&fleet, 1).await?;
    for encoding in [Encoding::Proto, Encoding::Json, Encoding::JsonIetf] {
        let response = c
            .get(gnmi::GetRequest {
                prefix: Some(path("/interfaces")?),
                path: vec![path("/interface[name=Ethernet1]/state/counters/in-octets")?],
                encoding: encoding as i32,
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(response.notification.len(), 1, "{encoding:?}");
        let n = &response.notification[0];
        assert!(n.timestamp > 1_600_000_000_000_000_000, "timestamp in ns");
        let prefix = proto::full_path(n.prefix.as_ref(), None)?;
        assert_eq!(
            prefix.to_string(),
            "/interfaces/interface[name=Ethernet1]/state"
        );
        let got = leaves(n)?;
        assert_eq!(got.len(), 1);
        assert!(counter(&got, &in_octets("Ethernet1"))? > 0, "{encoding:?}");
    }

    let status = c
        .get(gnmi::GetRequest {
            path: vec![path("/interfaces/interface[name=*]/state/oper-status")?],
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(status.notification.len(), 4);
    for n in &status.notification {
        for (p, v) in leaves(n)? {
            assert!(p.ends_with("/state/oper-status"), "{p}");
            assert!(matches!(v.as_text(), Some("UP" | "DOWN")), "{v:?}");
        }
    }

    let whole = c
        .get(gnmi::GetRequest {
            path: vec![path("/")?],
            encoding: Encoding::Proto as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let count: usize = whole.notification.iter().map(|n| n.update.len()).sum();
    // 8 leaves per interface, CPU, memory physical and used; a lone spine has no
    // LLDP neighbours.
    assert_eq!(count, 4 * 8 + 3);
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unsupported_requests_get_a_clear_status() -> Result<()> {
    let fleet = fleet(1).await?;
    let mut c = client(&fleet, 0).await?;
    let missing = c
        .get(gnmi::GetRequest {
            path: vec![path("/system/state/hostname")?],
            ..Default::default()
        })
        .await
        .expect_err("unknown path");
    assert_eq!(missing.code(), Code::NotFound);
    let bytes = c
        .get(gnmi::GetRequest {
            path: vec![path("/interfaces")?],
            encoding: Encoding::Bytes as i32,
            ..Default::default()
        })
        .await
        .expect_err("BYTES encoding");
    assert_eq!(bytes.code(), Code::Unimplemented);
    let set = c
        .set(gnmi::SetRequest::default())
        .await
        .expect_err("Set is refused");
    assert_eq!(set.code(), Code::Unimplemented);

    // A poll before any subscription list.
    let (tx, rx) = mpsc::channel(1);
    tx.send(SubscribeRequest {
        request: Some(Outbound::Poll(gnmi::Poll {})),
        ..Default::default()
    })
    .await?;
    let refused = c
        .subscribe(ReceiverStream::new(rx))
        .await
        .expect_err("poll first");
    assert_eq!(refused.code(), Code::InvalidArgument);
    fleet.shutdown().await;
    Ok(())
}

fn sample_list(mode: Mode, paths: &[&str], interval: Duration) -> Result<SubscriptionList> {
    Ok(SubscriptionList {
        mode: mode as i32,
        encoding: Encoding::Proto as i32,
        subscription: paths
            .iter()
            .map(|p| {
                Ok(gnmi::Subscription {
                    path: Some(path(p)?),
                    mode: SubscriptionMode::Sample as i32,
                    sample_interval: u64::try_from(interval.as_nanos())?,
                    ..Default::default()
                })
            })
            .collect::<Result<_>>()?,
        ..Default::default()
    })
}

#[tokio::test]
async fn stream_sends_values_then_sync_then_growing_samples() -> Result<()> {
    let fleet = fleet(2).await?;
    let mut c = client(&fleet, 0).await?;
    let list = sample_list(
        Mode::Stream,
        &["/interfaces/interface[name=*]/state/counters/in-octets"],
        Duration::from_millis(200),
    )?;
    let (_tx, mut stream) = subscribe(&mut c, list).await?;
    let initial = until_sync(&mut stream).await?;
    assert_eq!(initial.len(), 4, "one in-octets per interface before sync");

    // The next sample carries every interface again; counters never go back, and links
    // that are up (most of them) have moved on.
    let mut later = Vec::new();
    while later.len() < 4 {
        match next(&mut stream).await? {
            Some(Inbound::Update(n)) => later.extend(leaves(&n)?),
            other => bail!("expected a sample, got {other:?}"),
        }
    }
    let mut grew = 0;
    for ifname in ["Ethernet1", "Ethernet2", "Ethernet3", "Ethernet4"] {
        let (before, after) = (
            counter(&initial, &in_octets(ifname))?,
            counter(&later, &in_octets(ifname))?,
        );
        ensure!(after >= before, "{ifname}: {before} -> {after}");
        grew += usize::from(after > before);
    }
    assert!(grew > 0, "no counter moved");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn once_sends_everything_then_sync_then_ends() -> Result<()> {
    let fleet = fleet(1).await?;
    let mut c = client(&fleet, 0).await?;
    let list = sample_list(Mode::Once, &["/interfaces"], Duration::ZERO)?;
    let (_tx, mut stream) = subscribe(&mut c, list).await?;
    let values = until_sync(&mut stream).await?;
    assert_eq!(values.len(), 4 * 8);
    assert_eq!(next(&mut stream).await?, None, "the stream ends after sync");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn poll_answers_each_poll_with_current_values() -> Result<()> {
    let fleet = fleet(1).await?;
    let mut c = client(&fleet, 0).await?;
    let leaf = "/interfaces/interface[name=Ethernet2]/state/counters/out-pkts";
    let list = sample_list(Mode::Poll, &[leaf], Duration::ZERO)?;
    let (tx, mut stream) = subscribe(&mut c, list).await?;
    let first = counter(&until_sync(&mut stream).await?, leaf)?;
    let mut last = first;
    for _ in 0..2 {
        tx.send(SubscribeRequest {
            request: Some(Outbound::Poll(gnmi::Poll {})),
            ..Default::default()
        })
        .await?;
        let now = counter(&until_sync(&mut stream).await?, leaf)?;
        ensure!(now >= last, "{last} -> {now}");
        last = now;
    }
    drop(tx);
    assert_eq!(next(&mut stream).await?, None, "ends when the client stops");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_ends_open_streams() -> Result<()> {
    let fleet = fleet(1).await?;
    let mut c = client(&fleet, 0).await?;
    let list = sample_list(Mode::Stream, &["/interfaces"], Duration::from_secs(60))?;
    let (_tx, mut stream) = subscribe(&mut c, list).await?;
    until_sync(&mut stream).await?;
    let addr = fleet.devices()[0].addr;
    tokio::time::timeout(WAIT, fleet.shutdown())
        .await
        .context("shutdown hung")?;
    // The stream ends (cleanly or with a transport error), and nothing listens any more.
    let end = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("stream still open")?;
    assert!(!matches!(end, Ok(Some(_))), "unexpected message {end:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    Ok(())
}
