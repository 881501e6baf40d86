//! A fleet of virtual devices, each a gNMI server on its own loopback address.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proto::gnmi::g_nmi_server::GNmiServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::device::Device;
use crate::target::Target;
use crate::{Error, Result};

/// Highest address a device may get: the last host address of 127.0.0.0/8.
const LAST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 254);
/// Usable last octets per /24: 1..=254.
const HOSTS_PER_BLOCK: u64 = 254;
/// How long [`Fleet::shutdown`] waits for servers to drain before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Number of devices.
    pub devices: usize,
    /// Address of the first device; device `i` gets `base_address + i`, skipping
    /// addresses ending in `.0` and `.255`. Must be in 127.0.0.0/8, which Linux routes to
    /// `lo` as a whole, so no interface configuration is needed.
    pub base_address: Ipv4Addr,
    /// gNMI port of every device; 0 gives each device an ephemeral port.
    pub port: u16,
    /// Interfaces per device, named `Ethernet1`, `Ethernet2`, ...
    pub interfaces: usize,
    /// Seed of every generated number: the same seed gives the same traffic and flaps.
    pub seed: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            devices: 1,
            base_address: Ipv4Addr::new(127, 0, 1, 1),
            port: 57400,
            interfaces: 4,
            seed: 0,
        }
    }
}

/// A running virtual device, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDevice {
    /// Device name: `sim-0001`, `sim-0002`, ...
    pub name: String,
    /// Address its gNMI server listens on.
    pub addr: SocketAddr,
    /// Interface names, in order.
    pub interfaces: Vec<String>,
}

/// Running virtual devices. Dropping it stops the servers too, without waiting for them;
/// [`Fleet::shutdown`] waits.
#[derive(Debug)]
pub struct Fleet {
    devices: Vec<SimDevice>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Binds every device's address, then starts one gNMI server per device. Fails without
    /// starting anything if any address cannot be bound; the error names the address.
    pub async fn start(config: FleetConfig) -> Result<Fleet> {
        let base = config.base_address;
        if !base.is_loopback() {
            return Err(Error::NotLoopback(base));
        }
        if config.devices > 0 && device_ip(base, config.devices - 1).is_none() {
            return Err(Error::AddressesExhausted {
                base,
                devices: config.devices,
            });
        }
        let mut bound = Vec::with_capacity(config.devices);
        for index in 0..config.devices {
            let ip = device_ip(base, index).ok_or(Error::AddressesExhausted {
                base,
                devices: config.devices,
            })?;
            let addr = SocketAddr::from((ip, config.port));
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let addr = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            bound.push((listener, addr));
        }

        let epoch = Instant::now();
        let (shutdown, stop) = watch::channel(false);
        let mut devices = Vec::with_capacity(bound.len());
        let mut servers = Vec::with_capacity(bound.len());
        for (index, (listener, addr)) in bound.into_iter().enumerate() {
            let name = format!("sim-{:04}", index + 1);
            let device = Arc::new(Device::new(
                name.clone(),
                index,
                config.interfaces,
                config.seed,
            ));
            devices.push(SimDevice {
                name,
                addr,
                interfaces: device.interfaces.iter().map(|i| i.name.clone()).collect(),
            });
            let target = Target::new(device, epoch, stop.clone());
            servers.push(tokio::spawn(serve(target, listener, addr, stop.clone())));
        }
        info!(
            devices = devices.len(),
            first = ?devices.first().map(|d| d.addr),
            "Simulated devices listening"
        );
        Ok(Fleet {
            devices,
            shutdown,
            servers,
        })
    }

    /// The devices, in order.
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// Stops accepting connections, ends every open subscription and waits for the servers
    /// to finish (at most a few seconds, after which they are aborted).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for mut server in self.servers {
            if tokio::time::timeout_at(deadline, &mut server)
                .await
                .is_err()
            {
                warn!("Simulated device did not stop in time; aborting it");
                server.abort();
            }
        }
    }
}

async fn serve(
    target: Target,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // Stop when asked, or when the fleet is dropped (the sender goes away).
    let signal = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let served = Server::builder()
        .add_service(GNmiServer::new(target))
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    if let Err(error) = served {
        warn!(%addr, %error, "Simulated device server failed");
    }
}

/// The address of device `index` (0-based): `base + index`, counting only addresses whose
/// last octet is 1..=254; `None` past [`LAST_ADDRESS`].
pub(crate) fn device_ip(base: Ipv4Addr, index: usize) -> Option<Ipv4Addr> {
    let base = u64::from(u32::from(base));
    let (block, octet) = (base >> 8, base & 0xff);
    // Position of the first usable address within its /24 (0 = `.1`).
    let (block, first) = match octet {
        0 => (block, 0),
        255 => (block + 1, 0),
        octet => (block, octet - 1),
    };
    let position = first + u64::try_from(index).ok()?;
    let block = block + position / HOSTS_PER_BLOCK;
    let addr = (block << 8) | (position % HOSTS_PER_BLOCK + 1);
    if addr > u64::from(u32::from(LAST_ADDRESS)) {
        return None;
    }
    u32::try_from(addr).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    #[test]
    fn addresses_count_up_skipping_network_and_broadcast_octets() {
        let base = ip("127.0.1.1");
        let got: Vec<_> = [0, 1, 252, 253, 254, 507, 508]
            .iter()
            .map(|&i| device_ip(base, i).map(|a| a.to_string()))
            .collect();
        let want = [
            "127.0.1.1",
            "127.0.1.2",
            "127.0.1.253",
            "127.0.1.254",
            "127.0.2.1",
            "127.0.2.254",
            "127.0.3.1",
        ];
        assert_eq!(got, want.map(|s| Some(s.to_owned())));
        assert_eq!(device_ip(ip("127.0.1.0"), 0), Some(ip("127.0.1.1")));
        assert_eq!(device_ip(ip("127.0.1.255"), 0), Some(ip("127.0.2.1")));
        assert_eq!(device_ip(ip("127.0.1.250"), 4), Some(ip("127.0.1.254")));
        assert_eq!(device_ip(ip("127.0.1.250"), 5), Some(ip("127.0.2.1")));
    }

    #[test]
    fn addresses_stop_at_the_end_of_loopback() {
        let base = ip("127.255.255.250");
        assert_eq!(device_ip(base, 4), Some(ip("127.255.255.254")));
        assert_eq!(device_ip(base, 5), None);
        assert_eq!(device_ip(ip("127.255.255.255"), 0), None);
        assert_eq!(device_ip(ip("127.0.0.1"), usize::MAX), None);
    }

    #[tokio::test]
    async fn refuses_non_loopback_and_exhausted_ranges() {
        let config = FleetConfig {
            base_address: ip("10.0.0.1"),
            ..FleetConfig::default()
        };
        assert!(matches!(
            Fleet::start(config).await,
            Err(Error::NotLoopback(_))
        ));
        let config = FleetConfig {
            base_address: ip("127.255.255.254"),
            devices: 2,
            ..FleetConfig::default()
        };
        let err = Fleet::start(config).await.err();
        assert!(
            matches!(err, Some(Error::AddressesExhausted { devices: 2, .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_address_is_named_in_the_error() {
        let taken = TcpListener::bind("127.0.9.9:0")
            .await
            .expect("bind a probe port");
        let port = taken.local_addr().expect("probe address").port();
        let config = FleetConfig {
            base_address: ip("127.0.9.8"),
            devices: 2,
            port,
            ..FleetConfig::default()
        };
        let err = Fleet::start(config).await.err();
        match err {
            Some(Error::Bind { addr, .. }) => {
                assert_eq!(addr, SocketAddr::from((ip("127.0.9.9"), port)));
                let text = Error::Bind {
                    addr,
                    source: std::io::ErrorKind::AddrInUse.into(),
                }
                .to_string();
                assert!(text.contains(&format!("127.0.9.9:{port}")), "{text}");
            }
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}
