//! Component tests of the simulator as a demanding peer: TLS, mutual TLS, credentials,
//! misbehaviour on demand and the leaf-spine fabric, driven by the tonic gNMI client.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use proto::gnmi::{
    self, Encoding, SubscribeRequest, SubscribeResponse, Subscription, SubscriptionList,
    SubscriptionMode, g_nmi_client::GNmiClient, subscribe_request::Request as Outbound,
    subscribe_response::Response as Inbound, subscription_list::Mode,
};
use simulator::{Fleet, FleetConfig, Misbehaviour, PASSWORD_KEY, Role, USERNAME_KEY};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status, Streaming};

/// Upper bound on any single wait for the simulator; generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(20);

fn config(devices: usize) -> FleetConfig {
    FleetConfig {
        devices,
        port: 0,
        seed: 5,
        ..FleetConfig::default()
    }
}

fn misbehaving(m: &str) -> Result<FleetConfig> {
    Ok(FleetConfig {
        misbehaviour: m.parse()?,
        ..config(1)
    })
}

async fn plain(fleet: &Fleet, index: usize) -> Result<GNmiClient<Channel>> {
    let addr = fleet.devices()[index].addr;
    Ok(GNmiClient::connect(format!("http://{addr}")).await?)
}

async fn tls(fleet: &Fleet, tls: ClientTlsConfig) -> Result<GNmiClient<Channel>> {
    let addr = fleet.devices()[0].addr;
    let channel = Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(WAIT)
        .connect()
        .await?;
    Ok(GNmiClient::new(channel))
}

fn path(s: &str) -> Result<gnmi::Path> {
    let p: model::Path = s.parse()?;
    Ok(gnmi::Path::from(&p))
}

fn list(
    mode: Mode,
    sub: SubscriptionMode,
    paths: &[&str],
    interval: Duration,
) -> Result<SubscriptionList> {
    Ok(SubscriptionList {
        mode: mode as i32,
        encoding: Encoding::JsonIetf as i32,
        subscription: paths
            .iter()
            .map(|p| {
                Ok(Subscription {
                    path: Some(path(p)?),
                    mode: sub as i32,
                    sample_interval: u64::try_from(interval.as_nanos())?,
                    ..Default::default()
                })
            })
            .collect::<Result<_>>()?,
        ..Default::default()
    })
}

async fn subscribe(
    client: &mut GNmiClient<Channel>,
    list: SubscriptionList,
) -> Result<(mpsc::Sender<SubscribeRequest>, Streaming<SubscribeResponse>), Status> {
    let (tx, rx) = mpsc::channel(4);
    let _ = tx
        .send(SubscribeRequest {
            request: Some(Outbound::Subscribe(list)),
            ..Default::default()
        })
        .await;
    let stream = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

async fn next(
    stream: &mut Streaming<SubscribeResponse>,
) -> Result<Result<Option<Inbound>, Status>> {
    let message = tokio::time::timeout(WAIT, stream.message())
        .await
        .context("timed out waiting for the simulator")?;
    Ok(message.map(|m| m.and_then(|m| m.response)))
}

/// Notifications up to the sync response.
async fn until_sync(stream: &mut Streaming<SubscribeResponse>) -> Result<Vec<gnmi::Notification>> {
    let mut out = Vec::new();
    loop {
        match next(stream).await?? {
            Some(Inbound::Update(n)) => out.push(n),
            Some(Inbound::SyncResponse(true)) => return Ok(out),
            other => bail!("unexpected {other:?}"),
        }
    }
}

fn get_request(p: &str, encoding: Encoding) -> Result<gnmi::GetRequest> {
    Ok(gnmi::GetRequest {
        path: vec![path(p)?],
        encoding: encoding as i32,
        ..Default::default()
    })
}

#[tokio::test]
async fn tls_clients_that_trust_the_ca_connect_and_others_do_not() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        tls: true,
        ..config(1)
    })
    .await?;
    let ca = fleet.ca_pem().context("a TLS fleet has a CA")?;
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert_eq!(fleet.client_identity_pem(), None, "no mTLS asked for");

    let trusting = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    let mut c = tls(&fleet, trusting).await?;
    let caps = c.capabilities(gnmi::CapabilityRequest::default()).await?;
    assert!(!caps.into_inner().supported_encodings.is_empty());

    // A client that does not trust the CA fails the handshake.
    let other_ca = Fleet::start(FleetConfig {
        tls: true,
        base_address: "127.0.7.1".parse()?,
        ..config(1)
    })
    .await?;
    let stranger = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(other_ca.ca_pem().context("CA")?));
    let refused = match tls(&fleet, stranger).await {
        Err(e) => Err(e),
        Ok(mut c) => c
            .capabilities(gnmi::CapabilityRequest::default())
            .await
            .map(|_| ())
            .map_err(anyhow::Error::from),
    };
    assert!(refused.is_err(), "an untrusted certificate was accepted");

    // Plain text to a TLS device fails too.
    let mut p = plain(&fleet, 0).await;
    let plain_result = match &mut p {
        Ok(c) => c
            .capabilities(gnmi::CapabilityRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_result, "plain text reached a TLS device");
    assert_eq!(Fleet::start(config(0)).await?.ca_pem(), None);
    other_ca.shutdown().await;
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn mutual_tls_demands_a_client_certificate_from_the_ca() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        tls: true,
        require_client_cert: true,
        base_address: "127.0.6.1".parse()?,
        ..config(1)
    })
    .await?;
    let ca = Certificate::from_pem(fleet.ca_pem().context("CA")?);
    let (cert, key) = fleet.client_identity_pem().context("client identity")?;

    let anonymous = ClientTlsConfig::new().ca_certificate(ca.clone());
    let refused = match tls(&fleet, anonymous).await {
        Err(_) => true,
        Ok(mut c) => c
            .capabilities(gnmi::CapabilityRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    let identified = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(Identity::from_pem(cert, key));
    let mut c = tls(&fleet, identified).await?;
    c.capabilities(gnmi::CapabilityRequest::default()).await?;
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn credentials_are_demanded_on_every_rpc() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        credentials: Some(("admin".into(), "s3cret".into())),
        base_address: "127.0.5.1".parse()?,
        ..config(1)
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let with = |user: &str, password: &str| -> Result<Request<gnmi::CapabilityRequest>> {
        let mut r = Request::new(gnmi::CapabilityRequest::default());
        r.metadata_mut().insert(USERNAME_KEY, user.parse()?);
        r.metadata_mut().insert(PASSWORD_KEY, password.parse()?);
        Ok(r)
    };
    let none = c
        .capabilities(gnmi::CapabilityRequest::default())
        .await
        .expect_err("no credentials");
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(none.message().contains("username"), "{none}");
    let wrong = c
        .capabilities(with("admin", "guess")?)
        .await
        .expect_err("wrong");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    c.capabilities(with("admin", "s3cret")?).await?;

    let get = c
        .get(get_request("/interfaces", Encoding::JsonIetf)?)
        .await
        .expect_err("Get without credentials");
    assert_eq!(get.code(), Code::Unauthenticated);
    let sub = subscribe(
        &mut c,
        list(Mode::Once, SubscriptionMode::Sample, &["/"], Duration::ZERO)?,
    )
    .await
    .expect_err("Subscribe without credentials");
    assert_eq!(sub.code(), Code::Unauthenticated);
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn refuse_on_change_is_per_device_and_unimplemented() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        misbehaving: vec![(1, "refuse-on-change".parse()?)],
        base_address: "127.0.4.1".parse()?,
        ..config(2)
    })
    .await?;
    let on_change = || {
        list(
            Mode::Stream,
            SubscriptionMode::OnChange,
            &["/interfaces/interface/state/oper-status"],
            Duration::ZERO,
        )
    };
    let mut good = plain(&fleet, 0).await?;
    let (_tx, mut stream) = subscribe(&mut good, on_change()?).await?;
    until_sync(&mut stream).await?;

    let mut bad = plain(&fleet, 1).await?;
    let refused = subscribe(&mut bad, on_change()?)
        .await
        .expect_err("ON_CHANGE refused");
    assert_eq!(refused.code(), Code::Unimplemented);
    assert!(refused.message().contains("ON_CHANGE"), "{refused}");
    // SAMPLE still works on the difficult device.
    let sample = list(
        Mode::Stream,
        SubscriptionMode::Sample,
        &["/interfaces"],
        Duration::from_secs(1),
    )?;
    let (_tx2, mut stream) = subscribe(&mut bad, sample).await?;
    until_sync(&mut stream).await?;

    let err = Fleet::start(FleetConfig {
        misbehaving: vec![(2, Misbehaviour::default())],
        ..config(2)
    })
    .await
    .expect_err("index past the fleet");
    assert!(err.to_string().contains("index 2"), "{err}");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn json_ietf_only_devices_advertise_and_accept_only_json_ietf() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.1".parse()?,
        ..misbehaving("json-ietf-only")?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let caps = c
        .capabilities(gnmi::CapabilityRequest::default())
        .await?
        .into_inner();
    assert_eq!(caps.supported_encodings, vec![Encoding::JsonIetf as i32]);
    let proto = c
        .get(get_request("/interfaces", Encoding::Proto)?)
        .await
        .expect_err("PROTO refused");
    assert_eq!(proto.code(), Code::Unimplemented);
    assert!(proto.message().contains("JSON_IETF"), "{proto}");
    let got = c
        .get(get_request("/interfaces", Encoding::JsonIetf)?)
        .await?;
    assert_eq!(got.into_inner().notification.len(), 4);
    let mut json = list(Mode::Once, SubscriptionMode::Sample, &["/"], Duration::ZERO)?;
    json.encoding = Encoding::Json as i32;
    let refused = subscribe(&mut c, json).await.expect_err("JSON refused");
    assert_eq!(refused.code(), Code::Unimplemented);
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn slow_devices_wait_before_each_response() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.11".parse()?,
        ..misbehaving("slow=150ms")?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let started = Instant::now();
    let (_tx, mut stream) = subscribe(
        &mut c,
        list(
            Mode::Once,
            SubscriptionMode::Sample,
            &["/interfaces"],
            Duration::ZERO,
        )?,
    )
    .await?;
    let updates = until_sync(&mut stream).await?;
    assert_eq!(updates.len(), 4);
    // Five responses (four updates and the sync), each delayed: a lower bound only.
    assert!(
        started.elapsed() >= Duration::from_millis(5 * 150),
        "{:?}",
        started.elapsed()
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn drop_every_ends_streams_with_unavailable() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.21".parse()?,
        ..misbehaving("drop-every=1s")?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    for _ in 0..2 {
        let started = Instant::now();
        let sample = list(
            Mode::Stream,
            SubscriptionMode::Sample,
            &["/interfaces"],
            Duration::from_millis(200),
        )?;
        let (_tx, mut stream) = subscribe(&mut c, sample).await?;
        until_sync(&mut stream).await?;
        let status = loop {
            match next(&mut stream).await? {
                Ok(Some(Inbound::Update(_))) => continue,
                Err(status) => break status,
                other => bail!("unexpected {other:?}"),
            }
        };
        assert_eq!(status.code(), Code::Unavailable, "{status}");
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn silent_after_keeps_the_stream_open_but_sends_nothing() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.31".parse()?,
        ..misbehaving("silent-after=1s")?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let started = Instant::now();
    let sample = list(
        Mode::Stream,
        SubscriptionMode::Sample,
        &["/interfaces"],
        Duration::from_millis(200),
    )?;
    let (_tx, mut stream) = subscribe(&mut c, sample).await?;
    until_sync(&mut stream).await?;
    let mut samples = 0;
    // Everything sent before the silence has arrived well within this.
    let quiet_from = started + Duration::from_millis(1500);
    while let Ok(message) = tokio::time::timeout_at(quiet_from, stream.message()).await {
        match message?.and_then(|m| m.response) {
            Some(Inbound::Update(_)) => samples += 1,
            other => bail!("unexpected {other:?}"),
        }
    }
    assert!(samples > 0, "samples flowed before the silence");
    let silence = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
    assert!(
        silence.is_err(),
        "the device spoke after going silent: {silence:?}"
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn malformed_paths_come_every_nth_notification() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.41".parse()?,
        ..misbehaving("malformed-path-every=3")?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let (_tx, mut stream) = subscribe(
        &mut c,
        list(
            Mode::Once,
            SubscriptionMode::Sample,
            &["/interfaces"],
            Duration::ZERO,
        )?,
    )
    .await?;
    let updates = until_sync(&mut stream).await?;
    let malformed: Vec<bool> = updates
        .iter()
        .map(|n| {
            n.update.iter().any(|u| {
                u.path
                    .as_ref()
                    .is_some_and(|p| p.elem.iter().any(|e| e.name.is_empty()))
            })
        })
        .collect();
    assert_eq!(malformed, vec![false, false, true, false]);
    let bad = &updates[2];
    assert!(proto::full_path(bad.prefix.as_ref(), bad.update[0].path.as_ref()).is_err());
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn oversize_is_sent_once_per_device() -> Result<()> {
    // tonic clients refuse messages over 4 MiB by default.
    let limit = 4 << 20;
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.51".parse()?,
        ..misbehaving(&format!("oversize={limit}"))?
    })
    .await?;
    let mut c = plain(&fleet, 0).await?;
    let once = || {
        list(
            Mode::Once,
            SubscriptionMode::Sample,
            &["/interfaces"],
            Duration::ZERO,
        )
    };
    let (_tx, mut stream) = subscribe(&mut c, once()?).await?;
    let too_big = next(&mut stream).await?.expect_err("the client refuses it");
    assert!(too_big.message().contains("too large"), "{too_big}");

    // A client that accepts big messages sees the banner once, then normal service.
    let mut c = plain(&fleet, 0)
        .await?
        .max_decoding_message_size(usize::MAX);
    let (_tx, mut stream) = subscribe(&mut c, once()?).await?;
    assert_eq!(
        until_sync(&mut stream).await?.len(),
        4,
        "no second oversize message"
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn leaves_see_their_spines_over_lldp_and_serve_cpu_and_memory() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.3.61".parse()?,
        ..config(8)
    })
    .await?;
    let roles: Vec<Role> = fleet.devices().iter().map(|d| d.role).collect();
    use Role::{Leaf, Spine};
    assert_eq!(roles, [Spine, Spine, Leaf, Leaf, Leaf, Leaf, Spine, Spine]);

    let mut leaf = plain(&fleet, 3).await?;
    let lldp = leaf
        .get(get_request(
            "/lldp/interfaces/interface/neighbors/neighbor/state/system-name",
            Encoding::JsonIetf,
        )?)
        .await?
        .into_inner();
    let mut neighbors = Vec::new();
    for n in &lldp.notification {
        for u in &n.update {
            let p = proto::full_path(n.prefix.as_ref(), u.path.as_ref())?;
            let v = u.val.as_ref().and_then(proto::to_value).context("value")?;
            neighbors.push((p.to_string(), v.as_text().unwrap_or_default().to_owned()));
        }
    }
    let base = "/lldp/interfaces/interface";
    assert_eq!(
        neighbors,
        [
            (
                format!("{base}[name=Ethernet1]/neighbors/neighbor[id=sim-0001]/state/system-name"),
                "sim-0001".to_owned()
            ),
            (
                format!("{base}[name=Ethernet2]/neighbors/neighbor[id=sim-0002]/state/system-name"),
                "sim-0002".to_owned()
            ),
        ]
    );
    let system = leaf
        .get(gnmi::GetRequest {
            path: vec![
                path("/components/component[name=CPU0]/cpu/utilization/state/instant")?,
                path("/system/memory/state")?,
            ],
            encoding: Encoding::JsonIetf as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let leaves: usize = system.notification.iter().map(|n| n.update.len()).sum();
    assert_eq!(leaves, 3, "instant, physical, used");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_shared_listener_serves_every_device_by_the_address_dialled() -> Result<()> {
    // A fixed port nobody else in these tests uses.
    let port = 47_611;
    let fleet = match Fleet::start(FleetConfig {
        shared_listener: true,
        port,
        base_address: "127.0.8.1".parse()?,
        ..config(3)
    })
    .await
    {
        Ok(fleet) => fleet,
        // Binding to `lo` needs CAP_NET_RAW; say so rather than pass silently.
        Err(simulator::Error::SharedListener(why)) if why.contains("`lo`") => {
            eprintln!("SKIPPED: {why}");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let err = Fleet::start(FleetConfig {
        shared_listener: true,
        port: 0,
        ..config(1)
    })
    .await
    .expect_err("a shared listener needs a fixed port");
    assert!(err.to_string().contains("fixed port"), "{err}");

    for (index, device) in fleet.devices().iter().enumerate() {
        assert_eq!(device.addr.port(), port);
        let mut c = plain(&fleet, index).await?;
        let lldp = c
            .get(get_request(
                "/lldp/interfaces/interface/neighbors/neighbor/state/system-name",
                Encoding::JsonIetf,
            )?)
            .await;
        // Device 3 (sim-0003) is a leaf with two spine neighbours; the spines see it.
        let neighbours: usize = lldp?.into_inner().notification.len();
        assert_eq!(
            neighbours,
            if index == 2 { 2 } else { 1 },
            "{}",
            device.name
        );
    }
    // An address of the loopback range that is no device is refused clearly.
    let stray = GNmiClient::connect(format!("http://127.0.8.200:{port}")).await;
    if let Ok(mut stray) = stray {
        let refused = stray
            .capabilities(gnmi::CapabilityRequest::default())
            .await
            .expect_err("no device there");
        assert_eq!(refused.code(), Code::Unavailable);
    }
    fleet.shutdown().await;
    Ok(())
}
