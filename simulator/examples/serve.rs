//! Runs a simulated fleet until interrupted, for manual tests and the pygnmi test.
//!
//! `cargo run -p simulator --example serve -- [DEVICES] [PORT] [BASE_ADDRESS] [INTERFACES]`
//! (defaults: 1 device, port 57400, 127.0.1.1, 4 interfaces; port 0 picks free ports).
//! `NETPULSE_SIM_MISBEHAVE` (a misbehaviour list, see `simulator::Misbehaviour`) makes
//! every device misbehave; `NETPULSE_SIM_CA_FILE=FILE` turns on TLS and writes the CA
//! certificate to FILE; `NETPULSE_SIM_CREDENTIALS=USER:PASSWORD` demands credentials;
//! `NETPULSE_SIM_SHARED_LISTENER=1` accepts every device on one socket (see
//! `FleetConfig::shared_listener`). Prints one `addr <address> <name>` line per device, then `ready`,
//! and stops on Ctrl-C or SIGTERM.

use std::io::Write as _;

use anyhow::Context as _;
use simulator::{Fleet, FleetConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut config = FleetConfig::default();
    if let Some(devices) = args.next() {
        config.devices = devices.parse().context("DEVICES must be a number")?;
    }
    if let Some(port) = args.next() {
        config.port = port.parse().context("PORT must be a number")?;
    }
    if let Some(base) = args.next() {
        config.base_address = base
            .parse()
            .context("BASE_ADDRESS must be an IPv4 address")?;
    }
    if let Some(interfaces) = args.next() {
        config.interfaces = interfaces.parse().context("INTERFACES must be a number")?;
    }
    if let Ok(list) = std::env::var("NETPULSE_SIM_MISBEHAVE") {
        config.misbehaviour = list.parse()?;
    }
    if let Ok(credentials) = std::env::var("NETPULSE_SIM_CREDENTIALS") {
        let (user, password) = credentials
            .split_once(':')
            .context("NETPULSE_SIM_CREDENTIALS must be USER:PASSWORD")?;
        config.credentials = Some((user.to_owned(), password.to_owned()));
    }
    config.shared_listener = std::env::var_os("NETPULSE_SIM_SHARED_LISTENER").is_some();
    let ca_file = std::env::var_os("NETPULSE_SIM_CA_FILE");
    config.tls = ca_file.is_some();
    // Listen for signals before announcing readiness, so a prompt SIGTERM is handled.
    let stop = stop_signal()?;
    let fleet = Fleet::start(config).await?;
    if let (Some(file), Some(ca)) = (ca_file, fleet.ca_pem()) {
        std::fs::write(&file, ca).context("cannot write the CA file")?;
    }
    let mut out = std::io::stdout().lock();
    for device in fleet.devices() {
        writeln!(out, "addr {} {}", device.addr, device.name)?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    stop.await?;
    fleet.shutdown().await;
    Ok(())
}

/// Completes on Ctrl-C or (on Unix) SIGTERM; the handlers are installed when called.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        Ok(())
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    Ok(async { Ok(tokio::signal::ctrl_c().await?) })
}
