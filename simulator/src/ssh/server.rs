//! The russh server of one device (or several sharing a process): authentication, exec
//! requests and an interactive shell with prompts, modes and paging.
//!
//! A connection costs one task and the russh session state; an idle device costs one
//! listening socket and its accept task. Connections are capped fleet-wide by a
//! semaphore; over the cap, new connections are closed at once.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet, Pty};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Command, ENABLE_DENIED, ENABLE_PASSWORD_PROMPT, Platform, View};
use crate::device::Device;
use crate::fabric::Fabric;

/// Page length without a PTY size: the classic 24-line terminal, less the `--More--` line.
const DEFAULT_PAGE: usize = 23;
/// What a paged command shows at the end of a page.
const MORE: &str = " --More-- ";
/// Wipes [`MORE`] off the line.
const ERASE_MORE: &str = "\r          \r";
/// The keyboard-interactive prompt.
const PASSWORD_PROMPT: &str = "Password: ";
/// Pause after a failed accept (out of descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every device's SSH server shares.
#[derive(Debug)]
pub(crate) struct Settings {
    /// russh configuration, host key included.
    pub russh: Arc<russh::server::Config>,
    /// The one username and password accepted.
    pub credentials: (String, String),
    /// Public keys accepted for any user.
    pub authorized: Vec<PublicKey>,
    pub slow_output: Option<Duration>,
    pub change_every: Option<Duration>,
    pub seed: u64,
    pub fabric: Fabric,
    /// Time zero of every counter, the same as the gNMI side's.
    pub epoch: Instant,
    /// Open connections, fleet-wide.
    pub sessions: Arc<Semaphore>,
    /// The password `enable` asks for, if any.
    pub enable_password: Option<String>,
}

/// The CLI of one device.
#[derive(Debug)]
pub(crate) struct Cli {
    pub device: Arc<Device>,
    pub index: usize,
    pub platform: Platform,
    pub settings: Arc<Settings>,
}

impl Cli {
    /// The device as it is now.
    fn view(&self) -> View {
        let s = &self.settings;
        View::of(
            &self.device,
            self.index,
            s.fabric,
            s.seed,
            self.platform,
            s.change_every,
            s.epoch.elapsed(),
        )
    }

    fn prompt(&self, privileged: bool) -> String {
        format!("{}{}", self.device.name, if privileged { '#' } else { '>' })
    }
}

/// Accepts SSH connections for `cli` on `listener` until `stop` turns true (or its sender
/// goes away); then asks every open session of this listener to disconnect.
pub(crate) async fn serve(listener: TcpListener, cli: Arc<Cli>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(device = %cli.device.name, %error, "SSH accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = cli.settings.sessions.clone().try_acquire_owned() else {
            debug!(device = %cli.device.name, %peer, "SSH session cap reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = Connection {
            cli: cli.clone(),
            peer,
            shells: Vec::new(),
        };
        let config = cli.settings.russh.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let session = tokio::select! {
                _ = stopped(&mut stop) => return,
                session = russh::server::run_stream(config, stream, handler) => session,
            };
            let session = match session {
                Ok(session) => session,
                Err(error) => {
                    debug!(%peer, %error, "SSH handshake failed");
                    return;
                }
            };
            let handle = session.handle();
            tokio::select! {
                ended = session => if let Err(error) = ended {
                    debug!(%peer, %error, "SSH session ended");
                },
                _ = stopped(&mut stop) => {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "shutting down".into(), "en".into())
                        .await;
                }
            }
        });
    }
}

/// Resolves once the fleet stops (or is dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One client connection.
#[derive(Debug)]
struct Connection {
    cli: Arc<Cli>,
    peer: SocketAddr,
    /// Interactive state of each open session channel.
    shells: Vec<(ChannelId, Shell)>,
}

impl Connection {
    fn shell(&mut self, channel: ChannelId) -> Option<&mut Shell> {
        self.shells
            .iter_mut()
            .find(|(id, _)| *id == channel)
            .map(|(_, s)| s)
    }

    fn password_ok(&self, user: &str, password: &str) -> bool {
        let (u, p) = &self.cli.settings.credentials;
        user == u && password == p
    }

    fn key_ok(&self, key: &PublicKey) -> bool {
        self.cli
            .settings
            .authorized
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }

    async fn slow(&self) {
        if let Some(delay) = self.cli.settings.slow_output {
            tokio::time::sleep(delay).await;
        }
    }
}

fn verdict(ok: bool) -> Auth {
    if ok { Auth::Accept } else { Auth::reject() }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(verdict(self.password_ok(user, password)))
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(verdict(self.key_ok(offer.public_key)))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(verdict(self.key_ok(key.public_key)))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Borrowed(""),
                prompts: Cow::Owned(vec![(Cow::Borrowed(PASSWORD_PROMPT), false)]),
            });
        };
        let answer = response.next().unwrap_or_default();
        let password = String::from_utf8_lossy(&answer);
        Ok(verdict(self.password_ok(user, &password)))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The handler callbacks carry the channel's traffic; the channel object itself is
        // not read, so drop it rather than let its queue fill.
        let id = channel.id();
        drop(channel);
        self.shells.push((id, Shell::default()));
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shells.retain(|(id, _)| *id != channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(shell) = self.shell(channel) {
            shell.pty = true;
            shell.rows = row_height;
        }
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(shell) = self.shell(channel) {
            shell.rows = row_height;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let banner = format!(
            "\r\n{} - netpulse simulated {} device\r\n\r\n{}",
            self.cli.device.name,
            self.cli.platform,
            self.cli.prompt(false)
        );
        if let Some(shell) = self.shell(channel) {
            shell.started = true;
        }
        session.data(channel, banner)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data);
        self.slow().await;
        let view = self.cli.view();
        if let Some(text) = view.render(Command::parse(line.trim_end()), 0) {
            session.data(channel, text)?;
        }
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cli = self.cli.clone();
        let Some(shell) = self.shell(channel) else {
            return Ok(());
        };
        if !shell.started {
            return Ok(());
        }
        let reply = shell.feed(data, &cli);
        if reply.ran_command {
            self.slow().await;
        }
        if !reply.out.is_empty() {
            session.data(channel, reply.out)?;
        }
        if reply.close {
            debug!(peer = %self.peer, device = %cli.device.name, "SSH shell exited");
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
        }
        Ok(())
    }
}

/// What the shell sends back for some input.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reply {
    out: String,
    /// The user exited: close the channel after `out`.
    close: bool,
    /// A command was run (so a slow device waits before answering).
    ran_command: bool,
}

/// The interactive state of one session channel.
#[derive(Debug, Default)]
struct Shell {
    /// A shell was requested: input is typed at a prompt.
    started: bool,
    /// A PTY was requested: typed characters are echoed.
    pty: bool,
    /// Rows of the PTY; 0 when unknown.
    rows: u32,
    /// `terminal length N`, once given.
    length: Option<usize>,
    privileged: bool,
    /// `enable` asked for its password: the next line is the password, not echoed.
    enable_asked: bool,
    line: String,
    /// The last byte was `\r`: a `\n` right after it is the same Enter.
    after_cr: bool,
    /// Lines of a paged output not shown yet.
    pending: VecDeque<String>,
}

impl Shell {
    fn page(&self) -> usize {
        match self.length {
            Some(n) => n,
            None if self.rows > 1 => self.rows as usize - 1,
            None => DEFAULT_PAGE,
        }
    }

    /// Handles typed bytes.
    fn feed(&mut self, data: &[u8], cli: &Cli) -> Reply {
        let mut reply = Reply::default();
        for &byte in data {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            if byte == b'\n' && after_cr {
                continue;
            }
            if !self.pending.is_empty() {
                reply.out.push_str(ERASE_MORE);
                match byte {
                    b' ' => self.show(self.page(), cli, &mut reply.out),
                    b'\r' | b'\n' => self.show(1, cli, &mut reply.out),
                    _ => {
                        self.pending.clear();
                        reply.out.push_str(&cli.prompt(self.privileged));
                    }
                }
                continue;
            }
            match byte {
                b'\r' | b'\n' => {
                    if self.pty {
                        reply.out.push_str("\r\n");
                    }
                    let line = std::mem::take(&mut self.line);
                    if std::mem::take(&mut self.enable_asked) {
                        self.enable_answered(&line, cli, &mut reply.out);
                        continue;
                    }
                    reply.ran_command = true;
                    if self.run(&line, cli, &mut reply.out) {
                        reply.close = true;
                        return reply;
                    }
                }
                // Backspace and delete.
                0x08 | 0x7f => {
                    let erased = self.line.pop().is_some();
                    if erased && self.pty && !self.enable_asked {
                        reply.out.push_str("\x08 \x08");
                    }
                }
                // Ctrl-C: drop the line.
                0x03 => {
                    self.line.clear();
                    self.enable_asked = false;
                    reply.out.push_str("\r\n");
                    reply.out.push_str(&cli.prompt(self.privileged));
                }
                b if b.is_ascii_graphic() || b == b' ' => {
                    self.line.push(char::from(b));
                    if self.pty && !self.enable_asked {
                        reply.out.push(char::from(b));
                    }
                }
                _ => {}
            }
        }
        reply
    }

    /// Runs one line; true when the session should end.
    fn run(&mut self, line: &str, cli: &Cli, out: &mut String) -> bool {
        let prompt = cli.prompt(self.privileged);
        let command = Command::parse(line);
        let text = match command {
            Command::Exit => return true,
            Command::Enable if !self.privileged && cli.settings.enable_password.is_some() => {
                self.enable_asked = true;
                out.push_str(ENABLE_PASSWORD_PROMPT);
                return false;
            }
            Command::Enable => {
                self.privileged = true;
                None
            }
            Command::Disable => {
                self.privileged = false;
                None
            }
            Command::TerminalLength(n) => {
                self.length = Some(n as usize);
                None
            }
            Command::ShowRunningConfig if !self.privileged => {
                Some(cli.view().privileged_only(prompt.len()))
            }
            command => cli.view().render(command, prompt.len()),
        };
        if let Some(text) = text {
            self.pending = text.lines().map(str::to_owned).collect();
            self.show(self.page(), cli, out);
        } else {
            out.push_str(&cli.prompt(self.privileged));
        }
        false
    }

    /// Checks the password typed after `enable` asked for it.
    fn enable_answered(&mut self, password: &str, cli: &Cli, out: &mut String) {
        if cli.settings.enable_password.as_deref() == Some(password) {
            self.privileged = true;
        } else {
            out.push_str(ENABLE_DENIED);
            out.push_str("\r\n");
        }
        out.push_str(&cli.prompt(self.privileged));
    }

    /// Shows up to `n` pending lines (all of them when `n` is 0), then `--More--` or the
    /// prompt.
    fn show(&mut self, n: usize, cli: &Cli, out: &mut String) {
        let n = if n == 0 { self.pending.len() } else { n };
        for line in self.pending.drain(..n.min(self.pending.len())) {
            out.push_str(&line);
            out.push_str("\r\n");
        }
        if self.pending.is_empty() {
            out.push_str(&cli.prompt(self.privileged));
        } else {
            out.push_str(MORE);
        }
    }
}

/// Methods a device offers: all three this server implements.
pub(crate) fn methods() -> MethodSet {
    MethodSet::from(
        &[
            MethodKind::Password,
            MethodKind::PublicKey,
            MethodKind::KeyboardInteractive,
        ][..],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::device_name;

    fn cli(platform: Platform) -> Cli {
        let fabric = Fabric::new(6, 2, 4);
        let settings = Settings {
            russh: Arc::new(russh::server::Config::default()),
            credentials: ("admin".into(), "admin".into()),
            authorized: Vec::new(),
            slow_output: None,
            change_every: None,
            seed: 1,
            fabric,
            epoch: Instant::now(),
            sessions: Arc::new(Semaphore::new(1)),
            enable_password: None,
        };
        Cli {
            device: Arc::new(Device::new(device_name(0), 0, 4, 1, fabric, true)),
            index: 0,
            platform,
            settings: Arc::new(settings),
        }
    }

    fn shell() -> Shell {
        Shell {
            started: true,
            pty: true,
            rows: 11,
            ..Shell::default()
        }
    }

    #[test]
    fn echoes_runs_and_prompts() {
        let cli = cli(Platform::CiscoIos);
        let mut sh = shell();
        let r = sh.feed(b"en\r\n", &cli);
        assert_eq!(r.out, "en\r\nsim-0001#");
        let r = sh.feed(b"shw\x7fow bogus\r", &cli);
        assert!(r.out.starts_with("shw\x08 \x08ow bogus\r\n"), "{:?}", r.out);
        assert!(r.out.contains("% Invalid input detected at '^' marker."));
        assert!(r.out.ends_with("sim-0001#"));
        assert!(sh.feed(b"exit\r", &cli).close);
    }

    #[test]
    fn pages_until_space_and_stops_on_q() {
        let cli = cli(Platform::AristaEos);
        let mut sh = shell();
        let first = sh.feed(b"show interfaces\r", &cli).out;
        assert!(first.ends_with(MORE), "{first:?}");
        // The echoed command line and 10 lines of output.
        assert_eq!(first.matches("\r\n").count(), 11, "{first:?}");
        let second = sh.feed(b" ", &cli).out;
        assert!(second.starts_with(ERASE_MORE) && second.ends_with(MORE));
        let stopped = sh.feed(b"q", &cli).out;
        assert_eq!(stopped, format!("{ERASE_MORE}sim-0001>"));
        let unpaged = {
            sh.feed(b"terminal length 0\r", &cli);
            sh.feed(b"show interfaces\r", &cli).out
        };
        assert!(!unpaged.contains(MORE) && unpaged.ends_with("sim-0001>"));
    }

    #[test]
    fn enable_asks_for_the_enable_password_without_echo() {
        let mut cli = cli(Platform::CiscoIos);
        let settings = Arc::get_mut(&mut cli.settings).unwrap();
        settings.enable_password = Some("s3cret".into());
        let mut sh = shell();
        sh.feed(b"terminal length 0\r", &cli);
        assert_eq!(sh.feed(b"enable\r", &cli).out, "enable\r\nPassword: ");
        let out = sh.feed(b"wrong\r", &cli).out;
        assert_eq!(out, "\r\n% Access denied\r\nsim-0001>");
        let out = sh.feed(b"show running-config\r", &cli).out;
        assert!(out.contains("% Invalid input"), "{out}");
        sh.feed(b"enable\r", &cli);
        let out = sh.feed(b"s3cret\r", &cli).out;
        assert_eq!(out, "\r\nsim-0001#");
        let out = sh.feed(b"show running-config\r", &cli).out;
        assert!(out.contains("hostname sim-0001"), "{out}");
        // Privileged already: `enable` asks nothing.
        assert_eq!(sh.feed(b"enable\r", &cli).out, "enable\r\nsim-0001#");
    }

    #[test]
    fn running_config_needs_enable() {
        let cli = cli(Platform::AristaEos);
        let mut sh = shell();
        let out = sh.feed(b"show running-config\r", &cli).out;
        assert!(out.contains("privileged mode required"), "{out}");
        sh.feed(b"enable\rterminal length 0\r", &cli);
        let out = sh.feed(b"show running-config\r", &cli).out;
        assert!(out.contains("hostname sim-0001"), "{out}");
    }
}
