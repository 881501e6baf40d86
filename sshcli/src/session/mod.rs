//! One SSH session to one network device, and the commands run over it.
//!
//! # Design
//!
//! A [`Session`] wraps one russh client connection. [`Session::connect`] resolves the
//! whole [`SessionConfig`] up front (host-key policy parsed, prompt and pager patterns
//! compiled), so a bad configuration fails before any packet is sent. Then it connects
//! under the connect timeout, verifies the host key with the [`HostKeyPolicy`] (there is
//! no accept-all: an unknown key is accepted only by explicit trust on first use, and
//! the learned key is handed back to be recorded), and tries the configured
//! [`AuthMethod`]s in order under the auth timeout.
//!
//! Commands run in one of two [`Mode`]s:
//!
//! - [`Mode::Exec`]: one exec channel per command, collecting stdout, stderr and the
//!   exit status. Devices that support it (EOS, IOS-XE) give clean output this way.
//! - [`Mode::Shell`]: one interactive shell on a PTY, opened on first use. The session
//!   waits for the prompt (pinning it to the hostname it saw), sends the paging-off
//!   commands, then for each command sends it and reads until the prompt ends the
//!   output, answering `--More--` pagers with a space should paging-off have failed.
//!   The echoed command and the trailing prompt are removed and line endings normalised
//!   (see [`text`]).
//!
//! Every command has a deadline and an output cap. A device that drops the connection
//! (idle disconnect, reload, a close in the middle of a command) yields
//! [`Error::Closed`], distinct from other failures, so the caller knows to reconnect;
//! [`Session::is_closed`] tells the same without running a command.
//!
//! [`limit`] caps concurrent sessions per device, per AAA group and per collector, and
//! computes the reconnect backoff.

pub mod host_key;
pub mod limit;
pub mod text;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Preferred, cipher, kex};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::Platform;
use host_key::{Checker, Verdict};
pub use host_key::{HostKeyPolicy, LearnedHostKey, fingerprint};

/// The default cap on one command's output.
pub const DEFAULT_MAX_OUTPUT: usize = 4 * 1024 * 1024;

/// The terminal type requested for the interactive shell.
const TERM: &str = "vt100";
/// A wide terminal so devices do not wrap long lines.
const TERM_COLUMNS: u32 = 511;
const TERM_ROWS: u32 = 24;
/// At most this many keyboard-interactive rounds before giving up on the method.
const MAX_KBD_ROUNDS: usize = 8;

/// Errors of SSH sessions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (a key, a pattern, an empty method list); nothing
    /// was sent to the device.
    #[error("invalid SSH configuration for {device}: {message}")]
    Config {
        /// The device the configuration is for.
        device: String,
        /// What is wrong.
        message: String,
    },
    /// The TCP connection or the SSH handshake failed.
    #[error("cannot connect to {device}: {source}")]
    Connect {
        /// The device.
        device: String,
        /// The cause.
        #[source]
        source: russh::Error,
    },
    /// Connecting (TCP, key exchange, host-key check) took longer than the connect
    /// timeout.
    #[error("connecting to {device} timed out after {after:?}")]
    ConnectTimeout {
        /// The device.
        device: String,
        /// The timeout.
        after: Duration,
    },
    /// The device presented a host key other than the expected one: possibly a
    /// man-in-the-middle, possibly a re-keyed device. Never retried automatically.
    #[error(
        "host key mismatch for {device}: expected {}, device presented {presented}",
        expected.join(" or ")
    )]
    HostKeyMismatch {
        /// The device.
        device: String,
        /// Fingerprints (`SHA256:...`) of the keys that would have been accepted.
        expected: Vec<String>,
        /// Fingerprint of the key the device presented.
        presented: String,
    },
    /// The host-key policy knows nothing about this host (no `known_hosts` entry).
    #[error("unknown host key for {device}: {presented} is not in known_hosts")]
    HostKeyUnknown {
        /// The device.
        device: String,
        /// Fingerprint of the key the device presented.
        presented: String,
    },
    /// The device presented a key that `known_hosts` marks `@revoked`.
    #[error("revoked host key for {device}: {presented}")]
    HostKeyRevoked {
        /// The device.
        device: String,
        /// Fingerprint of the revoked key.
        presented: String,
    },
    /// A private key could not be decoded (bad PEM, wrong or missing passphrase).
    #[error("cannot use the private key for {device}: {source}")]
    PrivateKey {
        /// The device.
        device: String,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// Every configured authentication method was rejected.
    #[error(
        "authentication as {user} on {device} failed: tried {}; server offers {}",
        tried.join(", "),
        if offered.is_empty() { "nothing more".to_owned() } else { offered.join(", ") }
    )]
    AuthFailed {
        /// The device.
        device: String,
        /// The user name.
        user: String,
        /// The methods tried, in order (`password`, `keyboard-interactive`, `publickey`).
        tried: Vec<String>,
        /// The methods the server said can continue, after the last failure.
        offered: Vec<String>,
    },
    /// Authentication took longer than the auth timeout.
    #[error("authentication on {device} timed out after {after:?}")]
    AuthTimeout {
        /// The device.
        device: String,
        /// The timeout.
        after: Duration,
    },
    /// The device closed the session (idle disconnect, reload, a close in the middle of
    /// a command). Reconnect to continue.
    #[error("session to {device} closed by the device while {during}")]
    Closed {
        /// The device.
        device: String,
        /// What the session was doing (`running "show version"`, ...).
        during: String,
    },
    /// A command did not complete (exit, or prompt seen) within the command timeout.
    /// In shell mode the shell is discarded; the next command opens a new one.
    #[error("command {command:?} on {device} timed out after {after:?}")]
    CommandTimeout {
        /// The device.
        device: String,
        /// The command.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// The shell opened but no prompt matching the pattern came within the command
    /// timeout; the pattern probably needs overriding for this device.
    #[error("no prompt from {device} within {after:?}; last line was {last_line:?}")]
    PromptNotFound {
        /// The device.
        device: String,
        /// The timeout.
        after: Duration,
        /// The last line received, to help write the prompt pattern.
        last_line: String,
    },
    /// `enable` was answered with a password prompt and no enable secret is configured.
    #[error("{device} asks for an enable secret to enter privileged mode, and none is configured")]
    EnableSecretRequired {
        /// The device.
        device: String,
    },
    /// The device did not enter privileged mode after `enable`: the enable secret was
    /// wrong (`% Access denied`, `% Bad secrets`, the password prompt again) or the user
    /// may not enable. Never retried automatically. The secret is never part of it.
    #[error("enable on {device} was refused: {reason}")]
    EnableDenied {
        /// The device.
        device: String,
        /// What happened, with what the device said (e.g. `the enable secret was not
        /// accepted; device said "% Access denied"`).
        reason: String,
    },
    /// A command produced more output than the cap; it was abandoned.
    #[error("output of {command:?} on {device} exceeds {limit} bytes")]
    OutputTooLarge {
        /// The device.
        device: String,
        /// The command.
        command: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// The device refused a request: opening a channel, an exec, or a PTY and shell.
    #[error("{device} refused the {request} request")]
    Refused {
        /// The device.
        device: String,
        /// What was refused (`channel`, `exec`, `shell`, `session`).
        request: &'static str,
    },
    /// Another SSH protocol error.
    #[error("SSH error with {device}: {source}")]
    Ssh {
        /// The device.
        device: String,
        /// The cause.
        #[source]
        source: russh::Error,
    },
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An authentication method. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// The `password` method.
    Password(String),
    /// The `keyboard-interactive` method, answering every prompt that asks for a
    /// password (or hides its echo) with this password.
    KeyboardInteractive(String),
    /// The `publickey` method with a private key in OpenSSH PEM format
    /// (`-----BEGIN OPENSSH PRIVATE KEY-----`), optionally encrypted.
    PrivateKey {
        /// The key file's content.
        pem: String,
        /// The passphrase of an encrypted key.
        passphrase: Option<String>,
    },
}

impl AuthMethod {
    /// The SSH name of the method.
    pub fn name(&self) -> &'static str {
        match self {
            AuthMethod::Password(_) => "password",
            AuthMethod::KeyboardInteractive(_) => "keyboard-interactive",
            AuthMethod::PrivateKey { .. } => "publickey",
        }
    }
}

impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(<redacted>)", self.name())
    }
}

/// The secret `enable` asks for (IOS `enable secret`, EOS `enable password`). `Debug`
/// never shows it, and it is never logged or put in an error.
#[derive(Clone, PartialEq, Eq)]
pub struct EnableSecret(String);

impl EnableSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        EnableSecret(secret.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EnableSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnableSecret(<redacted>)")
    }
}

/// How commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One exec channel per command.
    Exec,
    /// One interactive shell on a PTY, with prompt detection.
    #[default]
    Shell,
}

/// The timeouts of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, key exchange and host-key check.
    pub connect: Duration,
    /// All authentication methods together.
    pub auth: Duration,
    /// One command (and opening the shell up to its first prompt).
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            auth: Duration::from_secs(15),
            command: Duration::from_secs(60),
        }
    }
}

/// Interactive-shell settings; `None` fields take the platform's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShellSettings {
    /// The prompt pattern (a regex matched against the whole last line of output);
    /// default [`text::default_prompt`].
    pub prompt: Option<String>,
    /// Commands sent once after the first prompt to turn paging off; default
    /// [`text::default_paging_off`]. An empty list sends nothing.
    pub paging_off: Option<Vec<String>>,
    /// The pager pattern answered with a space; default [`text::DEFAULT_PAGER`].
    pub pager: Option<String>,
    /// Whether `enable` is sent when the first prompt is unprivileged (ends in `>`), as
    /// commands such as `show running-config` need; default yes. When the device answers
    /// with a password prompt ([`text::ENABLE_PASSWORD_PROMPT`]), `enable_secret` is sent;
    /// the shell then needs a privileged prompt (`#`), else [`Error::EnableDenied`].
    pub enable: Option<bool>,
    /// The secret for `enable`'s password prompt; without it, a device that asks fails
    /// with [`Error::EnableSecretRequired`].
    pub enable_secret: Option<EnableSecret>,
}

/// Everything needed to open a session to one device.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The device name, used in errors and logs.
    pub device: String,
    /// The host name or address to connect to.
    pub host: String,
    /// The SSH port.
    pub port: u16,
    /// The user to log in as.
    pub username: String,
    /// Authentication methods, tried in order.
    pub auth: Vec<AuthMethod>,
    /// How the device's host key is checked.
    pub host_key: HostKeyPolicy,
    /// The device's platform (prompt and paging defaults).
    pub platform: Platform,
    /// How [`Session::run`] runs commands.
    pub mode: Mode,
    /// Also offer legacy algorithms: kex `diffie-hellman-group14-sha1` and
    /// `diffie-hellman-group1-sha1`, host key `ssh-rsa` (SHA-1), ciphers `aes*-cbc` and
    /// `3des-cbc`. Off by default; for old devices only.
    pub legacy_algorithms: bool,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Shell-mode settings.
    pub shell: ShellSettings,
    /// The cap on one command's output in bytes.
    pub max_output: usize,
    /// Send an SSH keepalive after this long without traffic; the connection is
    /// closed after three unanswered ones.
    pub keepalive: Option<Duration>,
}

impl SessionConfig {
    /// A configuration with default timeouts, shell mode, modern algorithms and no
    /// authentication method yet (add some to `auth`).
    pub fn new(
        device: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        host_key: HostKeyPolicy,
        platform: Platform,
    ) -> Self {
        SessionConfig {
            device: device.into(),
            host: host.into(),
            port,
            username: username.into(),
            auth: Vec::new(),
            host_key,
            platform,
            mode: Mode::default(),
            legacy_algorithms: false,
            timeouts: Timeouts::default(),
            shell: ShellSettings::default(),
            max_output: DEFAULT_MAX_OUTPUT,
            keepalive: Some(Duration::from_secs(30)),
        }
    }

    fn config_error(&self, message: impl Into<String>) -> Error {
        Error::Config {
            device: self.device.clone(),
            message: message.into(),
        }
    }
}

/// The algorithms offered: russh's modern defaults, without SHA-1 `ssh-rsa` host keys
/// unless `legacy`, and with the legacy kex and CBC ciphers appended when `legacy`.
pub fn algorithms(legacy: bool) -> Preferred {
    let mut preferred = Preferred::default();
    let modern_keys: Vec<_> = preferred
        .key
        .iter()
        .filter(|a| !matches!(a, russh::keys::Algorithm::Rsa { hash: None }))
        .cloned()
        .collect();
    if !legacy {
        preferred.key = modern_keys.into();
        return preferred;
    }
    let mut keys = modern_keys;
    keys.push(russh::keys::Algorithm::Rsa { hash: None });
    preferred.key = keys.into();
    let mut kexes = preferred.kex.to_vec();
    kexes.extend([kex::DH_G14_SHA1, kex::DH_G1_SHA1]);
    preferred.kex = kexes.into();
    let mut ciphers = preferred.cipher.to_vec();
    ciphers.extend([
        cipher::AES_256_CBC,
        cipher::AES_192_CBC,
        cipher::AES_128_CBC,
        cipher::TRIPLE_DES_CBC,
    ]);
    preferred.cipher = ciphers.into();
    preferred
}

/// What one command gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The command as sent.
    pub command: String,
    /// Standard output (shell mode: everything the device printed), with LF line
    /// endings; in shell mode without the echoed command and the trailing prompt.
    pub text: String,
    /// Standard error (exec mode only).
    pub stderr: String,
    /// The exit status (exec mode only, when the device sent one).
    pub exit_status: Option<u32>,
    /// How long the command took.
    pub duration: Duration,
}

/// The russh handler: checks the host key and records the verdict for `connect`.
struct Client {
    checker: Checker,
    host: String,
    port: u16,
    verdict: Arc<Mutex<Option<Verdict>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.checker.verify(&self.host, self.port, key)
            }
            // Host certificates are not requested; one arriving anyway is not trusted.
            PublicKeyOrCertificate::Certificate(cert) => Verdict::Unknown {
                presented: cert
                    .public_key()
                    .fingerprint(russh::keys::HashAlg::Sha256)
                    .to_string(),
            },
        };
        let accept = matches!(verdict, Verdict::Trusted | Verdict::Learned(_));
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        Ok(accept)
    }
}

/// The interactive shell of a session.
struct Shell {
    channel: russh::Channel<client::Msg>,
    prompt: text::Prompt,
    closed: bool,
}

/// Compiled shell patterns.
#[derive(Debug, Clone)]
struct Patterns {
    prompt: text::Prompt,
    /// Whether the prompt is the platform default, which is pinned to the hostname.
    default_prompt: bool,
    pager: Arc<Regex>,
    paging_off: Vec<String>,
    enable: bool,
    enable_secret: Option<EnableSecret>,
    /// The password prompt `enable` may answer with.
    enable_password: Arc<Regex>,
}

/// One SSH session to one device. See the [module documentation](self).
pub struct Session {
    device: String,
    handle: client::Handle<Client>,
    mode: Mode,
    timeouts: Timeouts,
    max_output: usize,
    patterns: Patterns,
    shell: Option<Shell>,
    span: tracing::Span,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device", &self.device)
            .field("mode", &self.mode)
            .field("shell_open", &self.shell.is_some())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, verifies the host key and authenticates. Returns the host key learned
    /// on first use when the policy is [`HostKeyPolicy::TrustOnFirstUse`] without a
    /// learned key: the caller must record it.
    pub async fn connect(config: &SessionConfig) -> Result<(Session, Option<LearnedHostKey>)> {
        let span = info_span!("ssh_session", device = %config.device, host = %config.host, port = config.port);
        Self::connect_in(config, span.clone())
            .instrument(span)
            .await
    }

    async fn connect_in(
        config: &SessionConfig,
        span: tracing::Span,
    ) -> Result<(Session, Option<LearnedHostKey>)> {
        let checker = Checker::new(&config.host_key).map_err(|m| config.config_error(m))?;
        let patterns = compile_patterns(config)?;
        if config.auth.is_empty() {
            return Err(config.config_error("no authentication method configured"));
        }
        let russh_config = client::Config {
            preferred: algorithms(config.legacy_algorithms),
            keepalive_interval: config.keepalive,
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        };
        let verdict = Arc::new(Mutex::new(None));
        let handler = Client {
            checker,
            host: config.host.clone(),
            port: config.port,
            verdict: Arc::clone(&verdict),
        };
        let connecting = client::connect(
            Arc::new(russh_config),
            (config.host.as_str(), config.port),
            handler,
        );
        let connected = tokio::time::timeout(config.timeouts.connect, connecting).await;
        let verdict = verdict.lock().ok().and_then(|mut v| v.take());
        let device = config.device.clone();
        // A refused host key surfaces from russh as a generic error: report the verdict.
        let refusal = match verdict.clone() {
            Some(Verdict::Mismatch {
                expected,
                presented,
            }) => Some(Error::HostKeyMismatch {
                device: device.clone(),
                expected,
                presented,
            }),
            Some(Verdict::Unknown { presented }) => Some(Error::HostKeyUnknown {
                device: device.clone(),
                presented,
            }),
            Some(Verdict::Revoked { presented }) => Some(Error::HostKeyRevoked {
                device: device.clone(),
                presented,
            }),
            _ => None,
        };
        if let Some(error) = refusal {
            warn!(device = %device, %error, "Host key refused");
            return Err(error);
        }
        let mut handle = match connected {
            Err(_) => {
                return Err(Error::ConnectTimeout {
                    device,
                    after: config.timeouts.connect,
                });
            }
            Ok(Err(source)) => return Err(Error::Connect { device, source }),
            Ok(Ok(handle)) => handle,
        };
        let learned = match verdict {
            Some(Verdict::Learned(learned)) => {
                info!(device = %device, fingerprint = %learned.fingerprint, "Host key learned on first use");
                Some(learned)
            }
            _ => None,
        };
        match tokio::time::timeout(config.timeouts.auth, authenticate(&mut handle, config)).await {
            Err(_) => {
                return Err(Error::AuthTimeout {
                    device,
                    after: config.timeouts.auth,
                });
            }
            Ok(result) => result?,
        }
        debug!(device = %device, "Authenticated");
        let session = Session {
            device,
            handle,
            mode: config.mode,
            timeouts: config.timeouts,
            max_output: config.max_output,
            patterns,
            shell: None,
            span,
        };
        Ok((session, learned))
    }

    /// Changes the per-command timeout for the following commands (some commands,
    /// like `show tech-support`, need longer than the rest).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.timeouts.command = timeout;
    }

    /// The device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Whether the device closed the connection or the shell; such a session only
    /// returns [`Error::Closed`] and must be replaced.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed() || self.shell.as_ref().is_some_and(|s| s.closed)
    }

    /// Runs a command in the configured [`Mode`].
    pub async fn run(&mut self, command: &str) -> Result<Output> {
        match self.mode {
            Mode::Exec => self.exec(command).await,
            Mode::Shell => self.shell_command(command).await,
        }
    }

    /// Runs a command on its own exec channel and collects stdout, stderr and the exit
    /// status.
    pub async fn exec(&self, command: &str) -> Result<Output> {
        let started = Instant::now();
        let after = self.timeouts.command;
        let running = self.exec_inner(command, started);
        match tokio::time::timeout(after, running)
            .instrument(self.span.clone())
            .await
        {
            Ok(result) => result,
            Err(_) => {
                let error = Error::CommandTimeout {
                    device: self.device.clone(),
                    command: command.to_owned(),
                    after,
                };
                warn!(device = %self.device, %error, "Command timed out");
                Err(error)
            }
        }
    }

    async fn exec_inner(&self, command: &str, started: Instant) -> Result<Output> {
        let during = || format!("running {command:?}");
        if self.handle.is_closed() {
            return Err(self.closed(during()));
        }
        debug!(device = %self.device, command, "Exec");
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.ssh_error(e, during()))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.ssh_error(e, during()))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exit_status = None;
        let mut finished = false;
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus {
                    exit_status: status,
                } => exit_status = Some(status),
                ChannelMsg::ExitSignal { .. } | ChannelMsg::Eof => finished = true,
                ChannelMsg::Failure => {
                    return Err(Error::Refused {
                        device: self.device.clone(),
                        request: "exec",
                    });
                }
                ChannelMsg::Close => {
                    finished = true;
                    break;
                }
                _ => {}
            }
            if stdout.len() + stderr.len() > self.max_output {
                return Err(self.too_large(command));
            }
        }
        // The channel ended without the device finishing the command: the connection
        // went away under it.
        if !finished && exit_status.is_none() {
            return Err(self.closed(during()));
        }
        Ok(Output {
            command: command.to_owned(),
            text: text::clean(&String::from_utf8_lossy(&stdout)),
            stderr: text::clean(&String::from_utf8_lossy(&stderr)),
            exit_status,
            duration: started.elapsed(),
        })
    }

    /// Runs a command in the interactive shell, opening it (and turning paging off)
    /// first if needed. Returns the output without the echoed command and the prompt.
    pub async fn shell_command(&mut self, command: &str) -> Result<Output> {
        let span = self.span.clone();
        self.shell_command_inner(command).instrument(span).await
    }

    async fn shell_command_inner(&mut self, command: &str) -> Result<Output> {
        if self.shell.is_none() {
            self.open_shell_inner().await?;
        }
        let started = Instant::now();
        let result = self.send_and_read(command).await;
        if let Err(error) = &result {
            // After a timeout or an oversized output the shell is mid-command: start
            // afresh next time rather than read the rest as the next command's output.
            if matches!(
                error,
                Error::CommandTimeout { .. } | Error::OutputTooLarge { .. }
            ) && let Some(shell) = self.shell.take()
            {
                let _ = shell.channel.close().await;
            }
            warn!(device = %self.device, %error, "Shell command failed");
        }
        let text = result?;
        Ok(Output {
            command: command.to_owned(),
            text,
            stderr: String::new(),
            exit_status: None,
            duration: started.elapsed(),
        })
    }

    /// Opens the interactive shell: requests a PTY and a shell, waits for the prompt
    /// and sends the paging-off commands. Called by [`Session::shell_command`] when
    /// needed; call it directly to fail early.
    pub async fn open_shell(&mut self) -> Result<()> {
        let span = self.span.clone();
        self.open_shell_inner().instrument(span).await
    }

    async fn open_shell_inner(&mut self) -> Result<()> {
        let during = || "opening the shell".to_owned();
        if self.handle.is_closed() {
            return Err(self.closed(during()));
        }
        let after = self.timeouts.command;
        let deadline = Instant::now() + after;
        let opening = async {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.ssh_error(e, during()))?;
            channel
                .request_pty(true, TERM, TERM_COLUMNS, TERM_ROWS, 0, 0, &[])
                .await
                .map_err(|e| self.ssh_error(e, during()))?;
            channel
                .request_shell(true)
                .await
                .map_err(|e| self.ssh_error(e, during()))?;
            Ok::<_, Error>(channel)
        };
        let channel = match tokio::time::timeout_at(deadline, opening).await {
            Ok(channel) => channel?,
            Err(_) => {
                return Err(Error::PromptNotFound {
                    device: self.device.clone(),
                    after,
                    last_line: String::new(),
                });
            }
        };
        let mut shell = Shell {
            channel,
            prompt: self.patterns.prompt.clone(),
            closed: false,
        };
        let mut raw = Vec::new();
        let read = read_until_prompt(
            &mut shell,
            &mut raw,
            &self.patterns.pager,
            self.max_output,
            deadline,
        )
        .await;
        match read {
            Ok(()) => {}
            Err(ReadError::Timeout) => {
                return Err(Error::PromptNotFound {
                    device: self.device.clone(),
                    after,
                    last_line: text::last_line(&raw),
                });
            }
            Err(ReadError::Closed) => return Err(self.closed(during())),
            Err(ReadError::Refused) => {
                return Err(Error::Refused {
                    device: self.device.clone(),
                    request: "shell",
                });
            }
            Err(ReadError::TooLarge) => return Err(self.too_large("")),
            Err(ReadError::Ssh(e)) => return Err(self.ssh_error(e, during())),
        }
        let first_prompt = text::last_line(&raw);
        if self.patterns.default_prompt
            && let Some(pinned) = shell.prompt.pinned_by(&first_prompt)
        {
            shell.prompt = pinned;
        }
        debug!(device = %self.device, prompt = %first_prompt, "Shell open");
        self.shell = Some(shell);
        let unprivileged = first_prompt.trim_end().ends_with('>');
        if self.patterns.enable
            && unprivileged
            && let Err(error) = self.enable().await
        {
            // The shell may sit at a password prompt: do not type commands into it.
            if let Some(shell) = self.shell.take() {
                let _ = shell.channel.close().await;
            }
            warn!(device = %self.device, %error, "Enable failed");
            return Err(error);
        }
        for command in self.patterns.paging_off.clone() {
            if let Err(error) = self.send_and_read(&command).await {
                self.shell = None;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Sends `enable`, answers its password prompt with the enable secret, and checks
    /// that the prompt is privileged afterwards. The secret is sent once: a device that
    /// asks again has refused it.
    async fn enable(&mut self) -> Result<()> {
        let (text, asked) = self.exchange("enable", "enable", true).await?;
        if !asked {
            return self.privileged_after(&text, "the prompt stayed unprivileged after enable");
        }
        let Some(secret) = self.patterns.enable_secret.clone() else {
            return Err(Error::EnableSecretRequired {
                device: self.device.clone(),
            });
        };
        debug!(device = %self.device, "Enable secret requested");
        let (text, asked_again) = self.exchange(secret.expose(), "enable", true).await?;
        if asked_again {
            return Err(self.enable_denied(
                &text,
                "the enable secret was not accepted (asked for it again)",
            ));
        }
        self.privileged_after(&text, "the enable secret was not accepted")
    }

    /// Ok when the last line of `text` is a privileged prompt; else [`Error::EnableDenied`]
    /// with `why` and what the device said.
    fn privileged_after(&self, text: &str, why: &str) -> Result<()> {
        let prompt = text.rsplit('\n').next().unwrap_or_default().trim_end();
        if prompt.ends_with('#') {
            debug!(device = %self.device, "Privileged mode");
            return Ok(());
        }
        Err(self.enable_denied(text, why))
    }

    fn enable_denied(&self, text: &str, why: &str) -> Error {
        let secret = self
            .patterns
            .enable_secret
            .as_ref()
            .map(EnableSecret::expose);
        let reason = match text::device_message(text, secret) {
            Some(said) => format!("{why}; device said {said:?}"),
            None => why.to_owned(),
        };
        Error::EnableDenied {
            device: self.device.clone(),
            reason,
        }
    }

    /// Sends one command line to the open shell and returns its cleaned output.
    async fn send_and_read(&mut self, command: &str) -> Result<String> {
        debug!(device = %self.device, command, "Shell command");
        let (cleaned, _) = self.exchange(command, command, false).await?;
        let prompt = self
            .shell
            .as_ref()
            .map_or_else(|| self.patterns.prompt.clone(), |s| s.prompt.clone());
        Ok(text::command_output(&cleaned, command, &prompt))
    }

    /// Sends `line` to the open shell and reads until the prompt, or also until the
    /// enable password prompt when `password` (then the flag returned is true). Returns
    /// the cleaned text read. `label` names the command in errors and logs: `line` may be
    /// a secret.
    async fn exchange(
        &mut self,
        line: &str,
        label: &str,
        password: bool,
    ) -> Result<(String, bool)> {
        let during = || format!("running {label:?}");
        let after = self.timeouts.command;
        let deadline = Instant::now() + after;
        let Some(shell) = self.shell.as_mut() else {
            return Err(Error::Closed {
                device: self.device.clone(),
                during: during(),
            });
        };
        if shell.closed {
            return Err(Error::Closed {
                device: self.device.clone(),
                during: during(),
            });
        }
        let line = format!("{line}\n");
        let sent = tokio::time::timeout_at(deadline, shell.channel.data(line.as_bytes())).await;
        let mut raw = Vec::new();
        let read = match sent {
            Err(_) => Err(ReadError::Timeout),
            Ok(Err(e)) => Err(ReadError::Ssh(e)),
            Ok(Ok(())) => {
                read_until(
                    shell,
                    &mut raw,
                    &self.patterns.pager,
                    password.then_some(&self.patterns.enable_password),
                    self.max_output,
                    deadline,
                )
                .await
            }
        };
        match read {
            Ok(stop) => Ok((
                text::clean(&String::from_utf8_lossy(&raw)),
                stop == Stop::Password,
            )),
            Err(ReadError::Timeout) => Err(Error::CommandTimeout {
                device: self.device.clone(),
                command: label.to_owned(),
                after,
            }),
            Err(ReadError::TooLarge) => Err(self.too_large(label)),
            Err(ReadError::Refused) => Err(Error::Refused {
                device: self.device.clone(),
                request: "shell",
            }),
            Err(ReadError::Closed) => {
                if let Some(shell) = self.shell.as_mut() {
                    shell.closed = true;
                }
                Err(self.closed(during()))
            }
            Err(ReadError::Ssh(e)) => Err(self.ssh_error(e, during())),
        }
    }

    /// Closes the session politely.
    pub async fn close(self) {
        if let Some(shell) = &self.shell {
            let _ = shell.channel.close().await;
        }
        if let Err(error) = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await
        {
            debug!(device = %self.device, %error, "Disconnect failed");
        }
    }

    fn closed(&self, during: String) -> Error {
        let error = Error::Closed {
            device: self.device.clone(),
            during,
        };
        warn!(device = %self.device, %error, "Session closed by the device");
        error
    }

    fn too_large(&self, command: &str) -> Error {
        Error::OutputTooLarge {
            device: self.device.clone(),
            command: command.to_owned(),
            limit: self.max_output,
        }
    }

    /// A russh error, classified: a connection that went away is [`Error::Closed`].
    fn ssh_error(&self, source: russh::Error, during: String) -> Error {
        if self.handle.is_closed() || is_disconnect(&source) {
            return self.closed(during);
        }
        match source {
            russh::Error::ChannelOpenFailure(_) => Error::Refused {
                device: self.device.clone(),
                request: "channel",
            },
            russh::Error::RequestDenied => Error::Refused {
                device: self.device.clone(),
                request: "session",
            },
            source => Error::Ssh {
                device: self.device.clone(),
                source,
            },
        }
    }
}

fn is_disconnect(error: &russh::Error) -> bool {
    matches!(
        error,
        russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::SendError
            | russh::Error::RecvError
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::WrongChannel
    )
}

enum ReadError {
    Timeout,
    Refused,
    Closed,
    TooLarge,
    Ssh(russh::Error),
}

/// What ended a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The prompt.
    Prompt,
    /// The enable password prompt.
    Password,
}

/// Reads shell output into `raw` until its last line matches the prompt, answering
/// pagers with a space (the pager text is dropped from `raw`).
async fn read_until_prompt(
    shell: &mut Shell,
    raw: &mut Vec<u8>,
    pager: &Regex,
    max_output: usize,
    deadline: Instant,
) -> Result<(), ReadError> {
    read_until(shell, raw, pager, None, max_output, deadline)
        .await
        .map(drop)
}

/// [`read_until_prompt`], also stopping at a last line matching `password`.
async fn read_until(
    shell: &mut Shell,
    raw: &mut Vec<u8>,
    pager: &Regex,
    password: Option<&Regex>,
    max_output: usize,
    deadline: Instant,
) -> Result<Stop, ReadError> {
    loop {
        let message = tokio::time::timeout_at(deadline, shell.channel.wait())
            .await
            .map_err(|_| ReadError::Timeout)?;
        match message {
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                raw.extend_from_slice(&data);
                if raw.len() > max_output {
                    return Err(ReadError::TooLarge);
                }
                let last = text::last_line(raw);
                if shell.prompt.is_match(&last) {
                    return Ok(Stop::Prompt);
                }
                if password.is_some_and(|p| p.is_match(&last)) {
                    return Ok(Stop::Password);
                }
                if pager.is_match(&last) {
                    let keep = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                    raw.truncate(keep);
                    let sent =
                        tokio::time::timeout_at(deadline, shell.channel.data(&b" "[..])).await;
                    match sent {
                        Err(_) => return Err(ReadError::Timeout),
                        Ok(Err(e)) => return Err(ReadError::Ssh(e)),
                        Ok(Ok(())) => {}
                    }
                }
            }
            // The PTY or shell request was refused.
            Some(ChannelMsg::Failure) => return Err(ReadError::Refused),
            None
            | Some(ChannelMsg::Eof)
            | Some(ChannelMsg::Close)
            | Some(ChannelMsg::ExitStatus { .. }) => {
                shell.closed = true;
                return Err(ReadError::Closed);
            }
            Some(_) => {}
        }
    }
}

fn compile_patterns(config: &SessionConfig) -> Result<Patterns> {
    let settings = &config.shell;
    let prompt_source = settings
        .prompt
        .as_deref()
        .unwrap_or(text::default_prompt(config.platform));
    let prompt = text::anchored(prompt_source)
        .map(text::Prompt::new)
        .map_err(|e| config.config_error(format!("prompt pattern: {e}")))?;
    let pager = text::shared(settings.pager.as_deref().unwrap_or(text::DEFAULT_PAGER))
        .map_err(|e| config.config_error(format!("pager pattern: {e}")))?;
    Ok(Patterns {
        prompt,
        default_prompt: settings.prompt.is_none(),
        pager,
        paging_off: settings
            .paging_off
            .clone()
            .unwrap_or_else(|| text::default_paging_off(config.platform)),
        enable: settings.enable.unwrap_or(true),
        enable_secret: settings.enable_secret.clone(),
        enable_password: text::anchored(text::ENABLE_PASSWORD_PROMPT)
            .map_err(|e| config.config_error(format!("enable password prompt: {e}")))?,
    })
}

/// Tries each method in order; fails with the methods tried and what the server offers.
async fn authenticate(handle: &mut client::Handle<Client>, config: &SessionConfig) -> Result<()> {
    let device = &config.device;
    let user = config.username.as_str();
    let ssh = |source: russh::Error| {
        if is_disconnect(&source) {
            Error::Closed {
                device: device.clone(),
                during: "authenticating".to_owned(),
            }
        } else {
            Error::Ssh {
                device: device.clone(),
                source,
            }
        }
    };
    let mut tried = Vec::new();
    let mut offered: Vec<String> = Vec::new();
    for method in &config.auth {
        tried.push(method.name().to_owned());
        let outcome = match method {
            AuthMethod::Password(password) => handle
                .authenticate_password(user, password.as_str())
                .await
                .map_err(ssh)?,
            AuthMethod::KeyboardInteractive(password) => {
                keyboard_interactive(handle, user, password)
                    .await
                    .map_err(ssh)?
            }
            AuthMethod::PrivateKey { pem, passphrase } => {
                let key = russh::keys::decode_secret_key(pem, passphrase.as_deref()).map_err(
                    |source| Error::PrivateKey {
                        device: device.clone(),
                        source,
                    },
                )?;
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(ssh)?
                        .flatten()
                } else {
                    None
                };
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
                handle
                    .authenticate_publickey(user, key)
                    .await
                    .map_err(ssh)?
            }
        };
        match outcome {
            client::AuthResult::Success => return Ok(()),
            client::AuthResult::Failure {
                remaining_methods, ..
            } => {
                debug!(device = %device, method = method.name(), "Authentication method rejected");
                offered = remaining_methods
                    .iter()
                    .map(|m| <&str>::from(m).to_owned())
                    .collect();
            }
        }
    }
    let error = Error::AuthFailed {
        device: device.clone(),
        user: user.to_owned(),
        tried,
        offered,
    };
    warn!(device = %device, %error, "Authentication failed");
    Err(error)
}

/// Keyboard-interactive: answers password-like prompts (or hidden-echo ones) with the
/// password and others with an empty string.
async fn keyboard_interactive(
    handle: &mut client::Handle<Client>,
    user: &str,
    password: &str,
) -> Result<client::AuthResult, russh::Error> {
    let mut response = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await?;
    for _ in 0..MAX_KBD_ROUNDS {
        match response {
            client::KeyboardInteractiveAuthResponse::Success => {
                return Ok(client::AuthResult::Success);
            }
            client::KeyboardInteractiveAuthResponse::Failure {
                remaining_methods,
                partial_success,
            } => {
                return Ok(client::AuthResult::Failure {
                    remaining_methods,
                    partial_success,
                });
            }
            client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts
                    .iter()
                    .map(|p| {
                        if !p.echo || p.prompt.to_ascii_lowercase().contains("password") {
                            password.to_owned()
                        } else {
                            String::new()
                        }
                    })
                    .collect();
                response = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await?;
            }
        }
    }
    Ok(client::AuthResult::Failure {
        remaining_methods: russh::MethodSet::empty(),
        partial_success: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn legacy_algorithms_only_when_asked() {
        let modern = algorithms(false);
        let legacy = algorithms(true);
        assert!(!modern.kex.contains(&kex::DH_G14_SHA1));
        assert!(!modern.cipher.contains(&cipher::AES_128_CBC));
        assert!(
            !modern
                .key
                .contains(&russh::keys::Algorithm::Rsa { hash: None })
        );
        assert!(legacy.kex.contains(&kex::DH_G14_SHA1));
        assert!(legacy.kex.contains(&kex::DH_G1_SHA1));
        assert!(legacy.cipher.contains(&cipher::TRIPLE_DES_CBC));
        assert!(
            legacy
                .key
                .contains(&russh::keys::Algorithm::Rsa { hash: None })
        );
        // Modern algorithms stay first.
        assert_eq!(legacy.kex[0], modern.kex[0]);
    }

    #[test]
    fn auth_method_debug_hides_secrets() {
        let shown = format!("{:?}", AuthMethod::Password("hunter2".into()));
        assert!(!shown.contains("hunter2"));
        assert_eq!(shown, "password(<redacted>)");
        let settings = ShellSettings {
            enable_secret: Some(EnableSecret::new("hunter2")),
            ..ShellSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        let mut config = SessionConfig::new(
            "leaf1",
            "127.0.0.1",
            22,
            "u",
            HostKeyPolicy::TrustOnFirstUse { learned: None },
            Platform::AristaEos,
        );
        config.shell.prompt = Some("(".into());
        assert!(matches!(
            compile_patterns(&config),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn mismatch_error_names_device_and_both_fingerprints() {
        let error = Error::HostKeyMismatch {
            device: "leaf1".into(),
            expected: vec!["SHA256:aaa".into()],
            presented: "SHA256:bbb".into(),
        };
        assert_eq!(
            error.to_string(),
            "host key mismatch for leaf1: expected SHA256:aaa, device presented SHA256:bbb"
        );
    }
}
