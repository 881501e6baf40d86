//! A fleet of virtual devices, each a gNMI server on its own loopback address.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::gnmi::g_nmi_server::GNmiServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::device::{Device, device_name};
use crate::fabric::{Fabric, Role};
use crate::misbehaviour::Misbehaviour;
use crate::ssh::{self, Cli, Platform, Settings, SshConfig};
use crate::target::{Dispatch, Policy, Target};
use crate::tls::{Authority, PemPair};
use crate::{Error, Result};

/// Highest address a device may get: the last host address of 127.0.0.0/8.
const LAST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 254);
/// Usable last octets per /24: 1..=254.
const HOSTS_PER_BLOCK: u64 = 254;
/// How long [`Fleet::shutdown`] waits for servers to drain before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Listen backlog of a shared listener: a whole fleet's clients connect through it.
const SHARED_BACKLOG: u32 = 4096;
/// SSH identification string of every device.
const SSH_SERVER_ID: &str = "SSH-2.0-netpulse_sim";
/// How long a failed SSH authentication takes (short: it is a simulator).
const SSH_AUTH_REJECTION: Duration = Duration::from_millis(200);

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
    /// Spines per pod of the leaf-spine fabric LLDP reports: devices come in pods of
    /// `spines + interfaces`, the first `spines` of each pod being spines (see
    /// [`SimDevice::role`]). 0: no fabric and no LLDP neighbours.
    pub spines: usize,
    /// Whether devices serve CPU (`/components/component[name=CPU0]/cpu/utilization/
    /// state/instant`) and memory (`/system/memory/state/{physical,used}`) leaves.
    pub system_leaves: bool,
    /// Serve gNMI over TLS: the fleet makes a CA ([`Fleet::ca_pem`]) and one server
    /// certificate per device whose subject alternative name is the device's IP.
    pub tls: bool,
    /// With `tls`, also demand a client certificate signed by the fleet's CA
    /// ([`Fleet::client_identity_pem`]).
    pub require_client_cert: bool,
    /// Username and password every RPC must carry as `username`/`password` metadata;
    /// others get UNAUTHENTICATED. `None` accepts any (or no) credentials.
    pub credentials: Option<(String, String)>,
    /// How every device misbehaves (by default not at all).
    pub misbehaviour: Misbehaviour,
    /// Accept the connections of every device on one socket (`0.0.0.0:port` tied to the
    /// loopback interface `lo`), and tell the devices apart by the address the client
    /// dialled: one file descriptor for the whole fleet instead of one per device, so
    /// 10,000 devices and their 10,000 connections fit under a 20,000 descriptor limit.
    /// Needs a fixed `port`, no `tls`, Linux, and the right to bind to a device
    /// (CAP_NET_RAW). Off by default.
    pub shared_listener: bool,
    /// Per-device overrides of `misbehaviour`: (0-based device index, misbehaviour). The
    /// override replaces the fleet-wide misbehaviour for that device; the last one given
    /// for a device wins.
    pub misbehaving: Vec<(usize, Misbehaviour)>,
    /// Also serve SSH with a vendor-style CLI on every device's address (see
    /// [`SshConfig`]); `None` (the default): gNMI only. SSH always uses one listener per
    /// device, even with `shared_listener`.
    pub ssh: Option<SshConfig>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            devices: 1,
            base_address: Ipv4Addr::new(127, 0, 1, 1),
            port: 57400,
            interfaces: 4,
            seed: 0,
            spines: 2,
            system_leaves: true,
            tls: false,
            require_client_cert: false,
            credentials: None,
            misbehaviour: Misbehaviour::default(),
            misbehaving: Vec::new(),
            shared_listener: false,
            ssh: None,
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
    /// Its place in the leaf-spine fabric.
    pub role: Role,
    /// Address its SSH server listens on, when the fleet serves SSH.
    pub ssh_addr: Option<SocketAddr>,
    /// The CLI style it answers SSH commands in, when the fleet serves SSH.
    pub platform: Option<Platform>,
}

/// Running virtual devices. Dropping it stops the servers too, without waiting for them;
/// [`Fleet::shutdown`] waits.
#[derive(Debug)]
pub struct Fleet {
    devices: Vec<SimDevice>,
    ca_pem: Option<String>,
    client_identity: Option<PemPair>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    /// Sample notifications dropped by `drop-when-behind` devices, fleet-wide.
    dropped: Arc<AtomicU64>,
    /// The SSH host key (OpenSSH public-key line), when the fleet serves SSH.
    ssh_host_key: Option<String>,
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
        if let Some((index, _)) = config
            .misbehaving
            .iter()
            .find(|(i, _)| *i >= config.devices)
        {
            return Err(Error::NoSuchDevice {
                index: *index,
                devices: config.devices,
            });
        }
        let authority = config.tls.then(Authority::generate).transpose()?;
        let client_identity = match &authority {
            Some(ca) if config.require_client_cert => Some(ca.client()?),
            _ => None,
        };
        let shared = if config.shared_listener {
            if config.port == 0 || config.tls {
                return Err(Error::SharedListener(
                    "it needs a fixed port and no TLS".to_owned(),
                ));
            }
            Some(bind_shared(config.port)?)
        } else {
            None
        };
        let mut bound = Vec::with_capacity(config.devices);
        for index in 0..config.devices {
            let ip = device_ip(base, index).ok_or(Error::AddressesExhausted {
                base,
                devices: config.devices,
            })?;
            let addr = SocketAddr::from((ip, config.port));
            if shared.is_some() {
                bound.push((None, addr));
                continue;
            }
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let addr = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            bound.push((Some(listener), addr));
        }

        let ssh_listeners = match &config.ssh {
            Some(ssh) => bind_ssh(&bound, ssh.port).await?,
            None => Vec::new(),
        };

        // Builders first, so a certificate problem stops the fleet before anything runs.
        let mut builders = Vec::with_capacity(bound.len());
        for (index, (_, addr)) in bound.iter().enumerate() {
            let mut builder = Server::builder();
            if let Some(ca) = &authority {
                let server = ca.server(&device_name(index), addr.ip())?;
                let mut tls =
                    ServerTlsConfig::new().identity(Identity::from_pem(server.cert, server.key));
                if config.require_client_cert {
                    tls = tls.client_ca_root(Certificate::from_pem(ca.cert_pem()));
                }
                builder = builder.tls_config(tls).map_err(|source| Error::Tls {
                    addr: *addr,
                    source,
                })?;
            }
            builders.push(builder);
        }

        let fabric = Fabric::new(config.devices, config.spines, config.interfaces);
        let dropped = Arc::new(AtomicU64::new(0));
        let shared_policy = Arc::new(Policy::new(
            config.misbehaviour.clone(),
            config.credentials.clone(),
            dropped.clone(),
        ));
        let epoch = Instant::now();
        let ssh_settings = match &config.ssh {
            Some(ssh) => Some(ssh_settings(&config, ssh, fabric, epoch)?),
            None => None,
        };
        let ssh_host_key = match &ssh_settings {
            Some(s) => Some(host_key_line(s)?),
            None => None,
        };
        let mut ssh_listeners = ssh_listeners.into_iter();
        let (shutdown, stop) = watch::channel(false);
        let mut devices = Vec::with_capacity(bound.len());
        let mut servers = Vec::with_capacity(bound.len());
        let mut by_ip = HashMap::new();
        for (index, ((listener, addr), builder)) in bound.into_iter().zip(builders).enumerate() {
            let name = device_name(index);
            let device = Arc::new(Device::new(
                name.clone(),
                index,
                config.interfaces,
                config.seed,
                fabric,
                config.system_leaves,
            ));
            let mut ssh_addr = None;
            let mut platform = None;
            if let (Some(settings), Some(ssh), Some((listener, at))) =
                (&ssh_settings, &config.ssh, ssh_listeners.next())
            {
                let cli = Arc::new(Cli {
                    device: device.clone(),
                    index,
                    platform: ssh.platforms.platform(index, fabric.role(index)),
                    settings: settings.clone(),
                });
                ssh_addr = Some(at);
                platform = Some(cli.platform);
                servers.push(tokio::spawn(ssh::serve(listener, cli, stop.clone())));
            }
            devices.push(SimDevice {
                name,
                addr,
                interfaces: (0..config.interfaces).map(Device::interface_name).collect(),
                role: fabric.role(index),
                ssh_addr,
                platform,
            });
            let policy = policy_for(&config, index, &shared_policy);
            let target = Target::new(device, policy, epoch, stop.clone());
            match listener {
                Some(listener) => {
                    let served = serve(
                        builder,
                        GNmiServer::new(target),
                        listener,
                        addr,
                        stop.clone(),
                    );
                    servers.push(tokio::spawn(served));
                }
                None => {
                    by_ip.insert(addr.ip(), target);
                }
            }
        }
        if let Some(listener) = shared {
            let addr = listener.local_addr().map_err(|source| Error::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], config.port)),
                source,
            })?;
            let service = GNmiServer::new(Dispatch::new(by_ip));
            servers.push(tokio::spawn(serve(
                Server::builder(),
                service,
                listener,
                addr,
                stop.clone(),
            )));
        }
        info!(
            devices = devices.len(),
            first = ?devices.first().map(|d| d.addr),
            "Simulated devices listening"
        );
        Ok(Fleet {
            dropped,
            devices,
            ca_pem: authority.map(|ca| ca.cert_pem().to_owned()),
            client_identity,
            shutdown,
            servers,
            ssh_host_key,
        })
    }

    /// Sample notifications `drop-when-behind` devices dropped because their client read
    /// too slowly, fleet-wide, since the start.
    pub fn dropped_notifications(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The devices, in order.
    pub fn devices(&self) -> &[SimDevice] {
        &self.devices
    }

    /// The CA certificate (PEM) that signed every device's certificate, when the fleet
    /// serves TLS: what a client must trust.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// A client certificate and its private key (both PEM), signed by the fleet's CA, when
    /// the fleet demands client certificates.
    pub fn client_identity_pem(&self) -> Option<(String, String)> {
        self.client_identity
            .as_ref()
            .map(|p| (p.cert.clone(), p.key.clone()))
    }

    /// The fleet's SSH host key as an OpenSSH public-key line (`ssh-ed25519 AAAA...`), when
    /// it serves SSH: what a client should pin. Derived from the seed, so stable across
    /// restarts with the same seed.
    pub fn ssh_host_key(&self) -> Option<&str> {
        self.ssh_host_key.as_deref()
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

/// The policy of device `index`: the shared one, unless an override names the device (the
/// oversize-once flag is per device, so a device that sends one gets its own policy).
fn policy_for(config: &FleetConfig, index: usize, shared: &Arc<Policy>) -> Arc<Policy> {
    let misbehaviour = config
        .misbehaving
        .iter()
        .rev()
        .find(|(i, _)| *i == index)
        .map(|(_, m)| m);
    match misbehaviour {
        Some(m) => Arc::new(Policy::new(
            m.clone(),
            config.credentials.clone(),
            shared.dropped.clone(),
        )),
        None if shared.misbehaviour.oversize.is_some() => Arc::new(Policy::new(
            shared.misbehaviour.clone(),
            config.credentials.clone(),
            shared.dropped.clone(),
        )),
        None => Arc::clone(shared),
    }
}

/// Binds the SSH port on every device's address, in device order.
async fn bind_ssh(
    bound: &[(Option<TcpListener>, SocketAddr)],
    port: u16,
) -> Result<Vec<(TcpListener, SocketAddr)>> {
    let mut out = Vec::with_capacity(bound.len());
    for (_, gnmi) in bound {
        let addr = SocketAddr::new(gnmi.ip(), port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        out.push((listener, addr));
    }
    Ok(out)
}

/// What every device's SSH server shares: host key from the seed, credentials, keys.
fn ssh_settings(
    config: &FleetConfig,
    ssh: &SshConfig,
    fabric: Fabric,
    epoch: Instant,
) -> Result<Arc<Settings>> {
    let authorized = ssh
        .authorized_keys
        .iter()
        .map(|line| {
            russh::keys::PublicKey::from_openssh(line.trim())
                .map_err(|e| Error::SshKey(format!("{line:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let russh = russh::server::Config {
        server_id: russh::SshId::Standard(SSH_SERVER_ID.into()),
        methods: ssh::methods(),
        auth_rejection_time: SSH_AUTH_REJECTION,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![ssh::host_key(config.seed)],
        inactivity_timeout: ssh.idle_timeout,
        nodelay: true,
        ..russh::server::Config::default()
    };
    let credentials = config.credentials.clone().unwrap_or_else(|| {
        (
            ssh::DEFAULT_SSH_USERNAME.to_owned(),
            ssh::DEFAULT_SSH_PASSWORD.to_owned(),
        )
    });
    Ok(Arc::new(Settings {
        russh: Arc::new(russh),
        credentials,
        authorized,
        slow_output: ssh.slow_output,
        change_every: ssh.config_change_every,
        seed: config.seed,
        fabric,
        epoch,
        sessions: Arc::new(tokio::sync::Semaphore::new(ssh.max_sessions)),
        enable_password: ssh.enable_password.clone(),
    }))
}

fn host_key_line(settings: &Settings) -> Result<String> {
    settings
        .russh
        .keys
        .first()
        .ok_or_else(|| Error::SshKey("no host key".to_owned()))?
        .public_key()
        .to_openssh()
        .map_err(|e| Error::SshKey(e.to_string()))
}

/// Binds `0.0.0.0:port` on the loopback interface only: connections to any 127.x.y.z
/// address arrive here, and nothing from another interface does.
#[cfg(target_os = "linux")]
fn bind_shared(port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let bind = |source| Error::Bind { addr, source };
    let socket = tokio::net::TcpSocket::new_v4().map_err(bind)?;
    socket.set_reuseaddr(true).map_err(bind)?;
    socket
        .bind_device(Some(b"lo"))
        .map_err(|e| Error::SharedListener(format!("cannot tie a socket to `lo` ({e})")))?;
    socket.bind(addr).map_err(bind)?;
    socket.listen(SHARED_BACKLOG).map_err(bind)
}

#[cfg(not(target_os = "linux"))]
fn bind_shared(_port: u16) -> Result<TcpListener> {
    Err(Error::SharedListener("it needs Linux".to_owned()))
}

async fn serve<S>(
    builder: Server,
    service: GNmiServer<S>,
    listener: TcpListener,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    S: proto::gnmi::g_nmi_server::GNmi,
{
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // Stop when asked, or when the fleet is dropped (the sender goes away).
    let signal = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let mut builder = builder;
    let served = builder
        .add_service(service)
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
