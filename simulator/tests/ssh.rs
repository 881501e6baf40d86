//! Component tests of the SSH face: a real fleet on loopback, driven by russh's client and
//! cross-checked against the same devices' gNMI answers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use model::Value;
use proto::gnmi::{self, g_nmi_client::GNmiClient};
use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, ChannelMsg};
use simulator::{
    DEFAULT_SSH_PASSWORD, DEFAULT_SSH_USERNAME, Fleet, FleetConfig, Platform, SimDevice, SshConfig,
};
use tokio::sync::Semaphore;

/// Upper bound on any single wait for the simulator; generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(30);

/// A fleet of `devices` on `base`, SSH on ephemeral ports; with 2 spines per pod of 6,
/// device 0 is an EOS spine and device 2 an IOS leaf.
async fn start(base: &str, devices: usize) -> Result<Fleet> {
    Ok(Fleet::start(FleetConfig {
        devices,
        base_address: base.parse()?,
        port: 0,
        seed: 5,
        ssh: Some(SshConfig {
            port: 0,
            ..SshConfig::default()
        }),
        ..FleetConfig::default()
    })
    .await?)
}

/// Accepts any host key and remembers it.
#[derive(Debug, Default, Clone)]
struct Client {
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = key {
            *self.seen.lock().unwrap() = key.to_openssh().ok();
        }
        Ok(true)
    }
}

async fn connect(device: &SimDevice) -> Result<(Handle<Client>, Client)> {
    let addr = device.ssh_addr.context("the device serves SSH")?;
    let client = Client::default();
    let config = Arc::new(client::Config::default());
    let handle = tokio::time::timeout(WAIT, client::connect(config, addr, client.clone()))
        .await
        .context("timed out connecting")??;
    Ok((handle, client))
}

async fn login(device: &SimDevice) -> Result<Handle<Client>> {
    let (mut handle, _) = connect(device).await?;
    let auth = handle
        .authenticate_password(DEFAULT_SSH_USERNAME, DEFAULT_SSH_PASSWORD)
        .await?;
    ensure!(auth.success(), "password refused: {auth:?}");
    Ok(handle)
}

/// Runs `command` as an exec request: (output, exit status).
async fn exec(handle: &Handle<Client>, command: &str) -> Result<(String, Option<u32>)> {
    let mut channel = handle.channel_open_session().await?;
    channel.exec(true, command).await?;
    let mut out = Vec::new();
    let mut status = None;
    loop {
        let message = tokio::time::timeout(WAIT, channel.wait())
            .await
            .context("timed out waiting for output")?;
        match message {
            Some(ChannelMsg::Data { data }) => out.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
            Some(_) => {}
            None => break,
        }
    }
    Ok((String::from_utf8(out)?, status))
}

/// Reads shell output until it ends with `end`; returns everything read.
async fn read_until(channel: &mut Channel<client::Msg>, end: &str) -> Result<String> {
    let mut out = String::new();
    while !out.ends_with(end) {
        let message = tokio::time::timeout(WAIT, channel.wait())
            .await
            .with_context(|| format!("timed out waiting for {end:?}; got {out:?}"))?;
        match message {
            Some(ChannelMsg::Data { data }) => out.push_str(std::str::from_utf8(&data)?),
            Some(_) => {}
            None => bail!("channel closed before {end:?}; got {out:?}"),
        }
    }
    Ok(out)
}

async fn gnmi_get(device: &SimDevice, path: &str) -> Result<Vec<(String, Value)>> {
    let mut client = GNmiClient::connect(format!("http://{}", device.addr)).await?;
    let p: model::Path = path.parse()?;
    let response = client
        .get(gnmi::GetRequest {
            path: vec![gnmi::Path::from(&p)],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    for n in &response.notification {
        for u in &n.update {
            let path = proto::full_path(n.prefix.as_ref(), u.path.as_ref())?;
            let value = u
                .val
                .as_ref()
                .and_then(proto::to_value)
                .context("no value")?;
            out.push((path.to_string(), value));
        }
    }
    Ok(out)
}

/// Counters per interface: (name, [in-octets, out-octets, in-pkts, out-pkts, in-errors,
/// out-errors]).
type Counters = Vec<(String, [u64; 6])>;

async fn gnmi_counters(device: &SimDevice) -> Result<Counters> {
    let leaves = gnmi_get(device, "/interfaces/interface[name=*]/state/counters").await?;
    let names = [
        "in-octets",
        "out-octets",
        "in-pkts",
        "out-pkts",
        "in-errors",
        "out-errors",
    ];
    let mut out = Vec::new();
    for iface in &device.interfaces {
        let mut values = [0; 6];
        for (slot, name) in values.iter_mut().zip(names) {
            let want = format!("/interfaces/interface[name={iface}]/state/counters/{name}");
            *slot = match leaves.iter().find(|(p, _)| *p == want) {
                Some((_, Value::Uint(v))) => *v,
                other => bail!("{want}: {other:?}"),
            };
        }
        out.push((iface.clone(), values));
    }
    Ok(out)
}

/// The first number of the first line starting (after blanks) like `N <words>`.
fn number_before(block: &str, words: &str) -> Result<u64> {
    block
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            rest.starts_with(words).then(|| n.parse().ok()).flatten()
        })
        .with_context(|| format!("no `N {words}` in {block}"))
}

/// The number just before ` bytes` on the line starting `N <words>`.
fn bytes_after(block: &str, words: &str) -> Result<u64> {
    let line = block
        .lines()
        .map(str::trim)
        .find(|l| l.split_once(' ').is_some_and(|(_, r)| r.starts_with(words)))
        .with_context(|| format!("no `{words}` line"))?;
    let (_, rest) = line.split_once(", ").context("no bytes")?;
    Ok(rest.split(' ').next().unwrap_or_default().parse()?)
}

/// `show interfaces` of either platform, as the same six counters.
fn cli_counters(text: &str) -> Result<Counters> {
    let mut out = Vec::new();
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.contains(" line protocol is ") {
            let name = line.split(' ').next().unwrap_or_default().to_owned();
            blocks.push((name, String::new()));
        } else if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    for (name, block) in blocks {
        out.push((
            name,
            [
                bytes_after(&block, "packets input")?,
                bytes_after(&block, "packets output")?,
                number_before(&block, "packets input")?,
                number_before(&block, "packets output")?,
                number_before(&block, "input errors")?,
                number_before(&block, "output errors")?,
            ],
        ));
    }
    Ok(out)
}

#[tokio::test]
async fn password_auth_host_key_and_show_version_on_both_platforms() -> Result<()> {
    let fleet = start("127.0.70.1", 6).await?;
    let pinned = fleet
        .ssh_host_key()
        .context("the fleet serves SSH")?
        .to_owned();
    assert!(pinned.starts_with("ssh-ed25519 "), "{pinned}");

    let eos = &fleet.devices()[0];
    let ios = &fleet.devices()[2];
    assert_eq!(eos.platform, Some(Platform::AristaEos));
    assert_eq!(ios.platform, Some(Platform::CiscoIos));
    assert_eq!(eos.ssh_addr.map(|a| a.ip()), Some(eos.addr.ip()));

    let (mut handle, client) = connect(eos).await?;
    let seen = client.seen.lock().unwrap().clone();
    assert_eq!(seen.as_deref(), Some(pinned.as_str()));
    let refused = handle
        .authenticate_password(DEFAULT_SSH_USERNAME, "wrong")
        .await?;
    assert!(!refused.success(), "a wrong password is refused");
    let accepted = handle
        .authenticate_password(DEFAULT_SSH_USERNAME, DEFAULT_SSH_PASSWORD)
        .await?;
    assert!(accepted.success());
    let (version, status) = exec(&handle, "show version").await?;
    assert_eq!(status, Some(0));
    assert!(version.starts_with("Arista DCS-"), "{version}");
    assert!(version.contains("Serial number:"), "{version}");
    assert!(version.contains("Software image version: "), "{version}");
    assert!(version.contains("\nUptime: "), "{version}");

    let handle = login(ios).await?;
    let (version, status) = exec(&handle, "show version").await?;
    assert_eq!(status, Some(0));
    assert!(version.starts_with("Cisco IOS Software, "), "{version}");
    assert!(
        version.contains(&format!("\n{} uptime is ", ios.name)),
        "{version}"
    );
    assert!(version.contains("Processor board ID "), "{version}");

    // The same seed gives the same host key.
    let again = start("127.0.70.101", 1).await?;
    assert_eq!(again.ssh_host_key(), Some(pinned.as_str()));
    again.shutdown().await;
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn keyboard_interactive_answers_the_password_prompt() -> Result<()> {
    let fleet = start("127.0.71.1", 1).await?;
    let (mut handle, _) = connect(&fleet.devices()[0]).await?;
    let started = handle
        .authenticate_keyboard_interactive_start(DEFAULT_SSH_USERNAME, None)
        .await?;
    match started {
        client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
            assert_eq!(prompts.len(), 1);
            assert_eq!(prompts[0].prompt, "Password: ");
        }
        other => bail!("expected a prompt, got {other:?}"),
    }
    let done = handle
        .authenticate_keyboard_interactive_respond(vec![DEFAULT_SSH_PASSWORD.to_owned()])
        .await?;
    assert!(
        matches!(done, client::KeyboardInteractiveAuthResponse::Success),
        "{done:?}"
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn unknown_commands_get_the_vendor_error() -> Result<()> {
    let fleet = start("127.0.72.1", 6).await?;
    let eos = login(&fleet.devices()[0]).await?;
    let (out, status) = exec(&eos, "show bogus").await?;
    assert_eq!(out, "% Invalid input\n");
    assert_eq!(status, Some(0));
    let ios = login(&fleet.devices()[2]).await?;
    let (out, _) = exec(&ios, "show bogus").await?;
    assert_eq!(
        out, "     ^\n% Invalid input detected at '^' marker.\n\n",
        "the marker sits under the bad word"
    );
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shell_prompts_enable_pages_and_exits() -> Result<()> {
    let fleet = start("127.0.73.1", 6).await?;
    let device = &fleet.devices()[2];
    let host = &device.name;
    let handle = login(device).await?;
    let mut shell = handle.channel_open_session().await?;
    shell.request_pty(true, "vt100", 80, 24, 0, 0, &[]).await?;
    shell.request_shell(true).await?;
    let banner = read_until(&mut shell, &format!("{host}>")).await?;
    assert!(banner.contains("cisco_ios"), "{banner:?}");

    shell.data_bytes("enable\r").await?;
    read_until(&mut shell, &format!("{host}#")).await?;

    // 4 interfaces of ~30 lines: several pages of 23 lines at 24 rows.
    shell.data_bytes("show interfaces\r").await?;
    let first = read_until(&mut shell, " --More-- ").await?;
    assert_eq!(
        first.matches("\r\n").count(),
        24,
        "echo + 23 lines: {first:?}"
    );
    let mut pages = 1;
    let mut all = first;
    loop {
        shell.data_bytes(" ").await?;
        let next = read_until_either(&mut shell, " --More-- ", &format!("{host}#")).await?;
        pages += 1;
        let done = next.ends_with('#');
        all.push_str(&next);
        if done {
            break;
        }
        ensure!(pages < 50, "paging never ends");
    }
    assert!(pages >= 4, "{pages} pages");
    assert_eq!(all.matches(" line protocol is ").count(), 4);

    shell.data_bytes("terminal length 0\r").await?;
    read_until(&mut shell, &format!("{host}#")).await?;
    shell.data_bytes("show interfaces\r").await?;
    let whole = read_until(&mut shell, &format!("{host}#")).await?;
    assert!(!whole.contains("--More--"), "{whole:?}");
    assert_eq!(whole.matches(" line protocol is ").count(), 4);

    shell.data_bytes("show foo\r").await?;
    let error = read_until(&mut shell, &format!("{host}#")).await?;
    assert!(
        error.contains("% Invalid input detected at '^' marker."),
        "{error:?}"
    );

    shell.data_bytes("exit\r").await?;
    let mut closed = false;
    while let Ok(Some(message)) = tokio::time::timeout(WAIT, shell.wait()).await {
        if matches!(message, ChannelMsg::Close | ChannelMsg::Eof) {
            closed = true;
        }
    }
    assert!(closed, "exit closes the shell");
    fleet.shutdown().await;
    Ok(())
}

/// Like [`read_until`], stopping at whichever of two endings comes first.
async fn read_until_either(channel: &mut Channel<client::Msg>, a: &str, b: &str) -> Result<String> {
    let mut out = String::new();
    while !out.ends_with(a) && !out.ends_with(b) {
        let message = tokio::time::timeout(WAIT, channel.wait())
            .await
            .with_context(|| format!("timed out; got {out:?}"))?;
        match message {
            Some(ChannelMsg::Data { data }) => out.push_str(std::str::from_utf8(&data)?),
            Some(_) => {}
            None => bail!("channel closed; got {out:?}"),
        }
    }
    Ok(out)
}

#[tokio::test]
async fn show_interfaces_counters_lie_between_two_gnmi_reads() -> Result<()> {
    let fleet = start("127.0.74.1", 6).await?;
    for index in [0, 2] {
        let device = &fleet.devices()[index];
        let handle = login(device).await?;
        let before = gnmi_counters(device).await?;
        let (text, _) = exec(&handle, "show interfaces").await?;
        let after = gnmi_counters(device).await?;
        let cli = cli_counters(&text)?;
        assert_eq!(cli.len(), device.interfaces.len(), "{text}");
        let mut moved = false;
        for ((name, got), ((n0, lo), (n1, hi))) in cli.iter().zip(before.iter().zip(&after)) {
            assert_eq!((name, name), (n0, n1));
            for k in 0..6 {
                assert!(
                    lo[k] <= got[k] && got[k] <= hi[k],
                    "{} {name} counter {k}: {} not in [{}, {}]",
                    device.name,
                    got[k],
                    lo[k],
                    hi[k]
                );
            }
            moved |= got[0] > 0;
        }
        assert!(moved, "counters are not all zero");
    }
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lldp_neighbours_match_gnmi() -> Result<()> {
    let fleet = start("127.0.75.1", 6).await?;
    for index in [0, 2] {
        let device = &fleet.devices()[index];
        let leaves = gnmi_get(
            device,
            "/lldp/interfaces/interface[name=*]/neighbors/neighbor[id=*]/state",
        )
        .await?;
        let mut want = BTreeSet::new();
        for (path, value) in &leaves {
            if !path.ends_with("/port-id") {
                continue;
            }
            let local = between(path, "interface[name=", "]")?;
            let id = between(path, "neighbor[id=", "]")?;
            let port = value.as_text().context("port-id is text")?;
            want.insert((local.to_owned(), id.to_owned(), port.to_owned()));
        }
        assert!(!want.is_empty());
        let handle = login(device).await?;
        let (text, _) = exec(&handle, "show lldp neighbors").await?;
        let got: BTreeSet<_> = match device.platform {
            Some(Platform::AristaEos) => text
                .lines()
                .skip_while(|l| !l.starts_with("---"))
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<_> = l.split_whitespace().collect();
                    (f.len() == 4).then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
                })
                .collect(),
            _ => text
                .lines()
                .skip_while(|l| !l.starts_with("Device ID"))
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<_> = l.split_whitespace().collect();
                    (f.len() == 5).then(|| (f[1].to_owned(), f[0].to_owned(), f[4].to_owned()))
                })
                .collect(),
        };
        assert_eq!(got, want, "{}: {text}", device.name);
    }
    fleet.shutdown().await;
    Ok(())
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Result<&'a str> {
    let (_, rest) = s
        .split_once(start)
        .with_context(|| format!("{start} in {s}"))?;
    Ok(rest
        .split_once(end)
        .with_context(|| format!("{end} in {s}"))?
        .0)
}

#[tokio::test]
async fn two_hundred_devices_answer_show_version_concurrently() -> Result<()> {
    let fleet = Arc::new(start("127.0.80.1", 200).await?);
    let limit = Arc::new(Semaphore::new(32));
    let mut tasks = Vec::new();
    for index in 0..fleet.devices().len() {
        let fleet = fleet.clone();
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await?;
            let device = &fleet.devices()[index];
            let handle = login(device).await?;
            let (out, status) = exec(&handle, "show version").await?;
            ensure!(status == Some(0), "{}: status {status:?}", device.name);
            let expected = match device.platform {
                Some(Platform::AristaEos) => "Arista ".to_owned(),
                _ => format!("{} uptime is ", device.name),
            };
            ensure!(out.contains(&expected), "{}: {out}", device.name);
            anyhow::Ok(())
        }));
    }
    let mut ok = 0;
    for task in tasks {
        task.await??;
        ok += 1;
    }
    assert_eq!(ok, 200);
    let fleet = Arc::try_unwrap(fleet).map_err(|_| anyhow::anyhow!("fleet still shared"))?;
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_ssh_devices_have_no_ssh_address() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.76.1".parse()?,
        port: 0,
        ..FleetConfig::default()
    })
    .await?;
    assert_eq!(fleet.ssh_host_key(), None);
    assert_eq!(fleet.devices()[0].ssh_addr, None);
    assert_eq!(fleet.devices()[0].platform, None);
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn listed_public_keys_are_accepted_others_refused() -> Result<()> {
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
    let listed = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let other = PrivateKey::from(Ed25519Keypair::from_seed(&[8; 32]));
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.77.1".parse()?,
        port: 0,
        ssh: Some(SshConfig {
            port: 0,
            authorized_keys: vec![listed.public_key().to_openssh()?],
            ..SshConfig::default()
        }),
        ..FleetConfig::default()
    })
    .await?;
    let device = &fleet.devices()[0];
    let (mut handle, _) = connect(device).await?;
    let refused = handle
        .authenticate_publickey("anyone", PrivateKeyWithHashAlg::new(Arc::new(other), None))
        .await?;
    assert!(!refused.success(), "an unlisted key is refused");
    let accepted = handle
        .authenticate_publickey("anyone", PrivateKeyWithHashAlg::new(Arc::new(listed), None))
        .await?;
    assert!(accepted.success(), "{accepted:?}");
    let (out, _) = exec(&handle, "show lldp neighbors").await?;
    assert!(out.starts_with("Last table change time"), "{out}");
    fleet.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn idle_sessions_are_closed_when_configured() -> Result<()> {
    let fleet = Fleet::start(FleetConfig {
        base_address: "127.0.78.1".parse()?,
        port: 0,
        ssh: Some(SshConfig {
            port: 0,
            idle_timeout: Some(Duration::from_secs(1)),
            ..SshConfig::default()
        }),
        ..FleetConfig::default()
    })
    .await?;
    let handle = login(&fleet.devices()[0]).await?;
    let mut shell = handle.channel_open_session().await?;
    shell.request_shell(true).await?;
    read_until(&mut shell, ">").await?;
    // Send nothing: the device hangs up on its own, well before WAIT.
    let mut ended = false;
    while let Ok(message) = tokio::time::timeout(WAIT, shell.wait()).await {
        if message.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the idle session was not closed");
    assert!(handle.is_closed() || exec(&handle, "show version").await.is_err());
    fleet.shutdown().await;
    Ok(())
}
