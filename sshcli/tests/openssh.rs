//! Sessions against a real OpenSSH `sshd` on loopback, running the fake device CLI
//! (`tests/fixtures/fake-cli`) as its `ForceCommand`.
//!
//! Needs `/usr/sbin/sshd`, root (sshd authenticates system users) and the user
//! `netpulse-ssh` with password `netpulse-ssh-test`: `scripts/test` sets these up.
//! Without them the tests fail, they never skip.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sshcli::Platform;
use sshcli::session::{
    AuthMethod, EnableSecret, Error, HostKeyPolicy, Mode, Session, SessionConfig,
};

const SSHD: &str = "/usr/sbin/sshd";
const USER: &str = "netpulse-ssh";
const PASSWORD: &str = "netpulse-ssh-test";
const SETUP_HINT: &str =
    "run scripts/test (as root) once: it installs openssh-server and creates the test user";

#[derive(Debug, Clone, Copy)]
enum HostKeyType {
    Ed25519,
    Rsa,
}

/// A running sshd with its own host key and client keys; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    host_public: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.stdout(Stdio::null()).status().unwrap();
    assert!(status.success(), "{cmd:?} failed");
}

fn keygen(path: &Path, passphrase: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            "netpulse-test",
            "-N",
            passphrase,
            "-f",
        ])
        .arg(path));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    fn start() -> Sshd {
        Sshd::start_with(HostKeyType::Ed25519, "")
    }

    /// An sshd whose device CLI runs with these arguments (`--enable-secret ...`).
    fn start_cli(cli_args: &str) -> Sshd {
        Sshd::start_full(HostKeyType::Ed25519, "", cli_args)
    }

    /// An sshd with this host key type and extra configuration lines.
    fn start_with(host_key_type: HostKeyType, extra_config: &str) -> Sshd {
        Sshd::start_full(host_key_type, extra_config, "")
    }

    fn start_full(host_key_type: HostKeyType, extra_config: &str, cli_args: &str) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: {SETUP_HINT}");
        let id = Command::new("id").arg(USER).output().unwrap();
        assert!(id.status.success(), "user {USER} is missing: {SETUP_HINT}");

        let dir = tempfile::tempdir().unwrap();
        // sshd reads authorized_keys and runs the CLI as the test user.
        set_mode(dir.path(), 0o755);
        let path = |name: &str| dir.path().join(name);
        match host_key_type {
            HostKeyType::Ed25519 => keygen(&path("host_key"), ""),
            HostKeyType::Rsa => run(Command::new("ssh-keygen")
                .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
                .arg(path("host_key"))),
        }
        keygen(&path("client_key"), "");
        keygen(&path("client_key_pass"), "secret phrase");
        let authorized = format!(
            "{}{}",
            std::fs::read_to_string(path("client_key.pub")).unwrap(),
            std::fs::read_to_string(path("client_key_pass.pub")).unwrap()
        );
        std::fs::write(path("authorized_keys"), authorized).unwrap();
        set_mode(&path("authorized_keys"), 0o644);
        let cli = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-cli");
        std::fs::copy(&cli, path("fake-cli")).unwrap();
        set_mode(&path("fake-cli"), 0o755);

        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile {pid}\n\
             UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication yes\n\
             PubkeyAuthentication yes\nAuthorizedKeysFile {authorized}\nStrictModes no\n\
             AllowUsers {USER}\nForceCommand {cli} {cli_args}\nMaxAuthTries 10\nLogLevel VERBOSE\n{extra_config}",
            host_key = path("host_key").display(),
            pid = path("sshd.pid").display(),
            authorized = path("authorized_keys").display(),
            cli = path("fake-cli").display(),
        );
        std::fs::write(path("sshd_config"), config).unwrap();
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let host_public = std::fs::read_to_string(path("host_key.pub"))
            .unwrap()
            .trim()
            .to_owned();
        let mut sshd = Sshd {
            child,
            port,
            dir,
            host_public,
        };
        sshd.wait_listening();
        sshd
    }

    fn wait_listening(&mut self) {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sshd exited with {status}: {}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn key(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }

    fn config(&self, policy: HostKeyPolicy, auth: Vec<AuthMethod>) -> SessionConfig {
        let mut config = SessionConfig::new(
            "leaf1",
            "127.0.0.1",
            self.port,
            USER,
            policy,
            Platform::AristaEos,
        );
        config.auth = auth;
        config.timeouts.command = Duration::from_secs(10);
        config
    }

    fn pinned(&self) -> HostKeyPolicy {
        HostKeyPolicy::Pinned(vec![self.host_public.clone()])
    }

    fn password_config(&self) -> SessionConfig {
        self.config(self.pinned(), vec![AuthMethod::Password(PASSWORD.into())])
    }
}

/// A host key that is not the server's.
fn other_key() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("k"), "");
    let public = std::fs::read_to_string(dir.path().join("k.pub"))
        .unwrap()
        .trim()
        .to_owned();
    (dir, public)
}

fn fingerprint_of(openssh: &str) -> String {
    sshcli::session::fingerprint(&russh::keys::PublicKey::from_openssh(openssh).unwrap())
}

async fn connect(config: &SessionConfig) -> Session {
    match Session::connect(config).await {
        Ok((session, _)) => session,
        Err(error) => panic!("connect failed: {error}"),
    }
}

#[tokio::test]
async fn password_auth_and_exec() {
    let sshd = Sshd::start();
    let session = connect(&sshd.password_config()).await;
    let out = session.exec("show version").await.unwrap();
    assert!(
        out.text.contains("Software image version: 4.30.1F"),
        "{out:?}"
    );
    assert!(!out.text.contains('\r'));
    assert_eq!(out.exit_status, Some(0));
    assert_eq!(out.stderr, "");

    let out = session.exec("show error").await.unwrap();
    assert_eq!(out.text, "partial\n");
    assert_eq!(out.stderr, "% Error: something broke\n");
    assert_eq!(out.exit_status, Some(3));
    assert!(!session.is_closed());
    session.close().await;
}

#[tokio::test]
async fn key_auth_plain_and_with_passphrase() {
    let sshd = Sshd::start();
    let plain = AuthMethod::PrivateKey {
        pem: sshd.key("client_key"),
        passphrase: None,
    };
    let session = connect(&sshd.config(sshd.pinned(), vec![plain])).await;
    assert_eq!(
        session.exec("show version").await.unwrap().exit_status,
        Some(0)
    );

    let with_pass = AuthMethod::PrivateKey {
        pem: sshd.key("client_key_pass"),
        passphrase: Some("secret phrase".into()),
    };
    let session = connect(&sshd.config(sshd.pinned(), vec![with_pass])).await;
    assert_eq!(
        session.exec("show version").await.unwrap().exit_status,
        Some(0)
    );

    let wrong_pass = AuthMethod::PrivateKey {
        pem: sshd.key("client_key_pass"),
        passphrase: Some("nope".into()),
    };
    let error = Session::connect(&sshd.config(sshd.pinned(), vec![wrong_pass]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PrivateKey { .. }), "{error}");
}

#[tokio::test]
async fn keyboard_interactive_auth() {
    let sshd = Sshd::start();
    let config = sshd.config(
        sshd.pinned(),
        vec![AuthMethod::KeyboardInteractive(PASSWORD.into())],
    );
    let session = connect(&config).await;
    assert_eq!(
        session.exec("show version").await.unwrap().exit_status,
        Some(0)
    );
}

#[tokio::test]
async fn wrong_password_names_methods_tried_and_offered() {
    let sshd = Sshd::start();
    let config = sshd.config(
        sshd.pinned(),
        vec![
            AuthMethod::Password("wrong".into()),
            AuthMethod::KeyboardInteractive("wrong".into()),
        ],
    );
    let error = Session::connect(&config).await.unwrap_err();
    let Error::AuthFailed {
        device,
        user,
        tried,
        offered,
    } = &error
    else {
        panic!("unexpected {error}")
    };
    assert_eq!(device, "leaf1");
    assert_eq!(user, USER);
    assert_eq!(tried, &["password", "keyboard-interactive"]);
    assert!(offered.contains(&"publickey".to_owned()), "{offered:?}");
    let message = error.to_string();
    assert!(
        message.contains("tried password, keyboard-interactive"),
        "{message}"
    );
}

#[tokio::test]
async fn methods_tried_in_order_until_one_works() {
    let sshd = Sshd::start();
    let config = sshd.config(
        sshd.pinned(),
        vec![
            AuthMethod::Password("wrong".into()),
            AuthMethod::Password(PASSWORD.into()),
        ],
    );
    connect(&config).await;
}

#[tokio::test]
async fn pinned_host_key_mismatch_is_refused_with_both_fingerprints() {
    let sshd = Sshd::start();
    let (_dir, other) = other_key();
    let config = sshd.config(
        HostKeyPolicy::Pinned(vec![other.clone()]),
        vec![AuthMethod::Password(PASSWORD.into())],
    );
    let error = Session::connect(&config).await.unwrap_err();
    let Error::HostKeyMismatch {
        device,
        expected,
        presented,
    } = &error
    else {
        panic!("unexpected {error}")
    };
    assert_eq!(device, "leaf1");
    assert_eq!(expected, &[fingerprint_of(&other)]);
    assert_eq!(presented, &fingerprint_of(&sshd.host_public));
    let message = error.to_string();
    assert!(
        message.contains(&fingerprint_of(&other))
            && message.contains(&fingerprint_of(&sshd.host_public))
    );
    assert!(message.contains("leaf1"));
}

#[tokio::test]
async fn known_hosts_content() {
    let sshd = Sshd::start();
    let auth = || vec![AuthMethod::Password(PASSWORD.into())];
    let port = sshd.port;
    let good = format!(
        "# lab\nother.example {}\n[127.0.0.1]:{port} {}\n",
        other_key().1,
        sshd.host_public
    );
    connect(&sshd.config(HostKeyPolicy::KnownHosts(good), auth())).await;

    let (_dir, other) = other_key();
    let bad = format!("[127.0.0.1]:{port} {other}\n");
    let error = Session::connect(&sshd.config(HostKeyPolicy::KnownHosts(bad), auth()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::HostKeyMismatch { expected, .. } if expected == &[fingerprint_of(&other)]),
        "{error}"
    );

    // Hashed by OpenSSH itself (`ssh-keygen -H`).
    let file = sshd.dir.path().join("known_hosts");
    std::fs::write(&file, format!("[127.0.0.1]:{port} {}\n", sshd.host_public)).unwrap();
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&file)
        .stderr(Stdio::null()));
    let hashed = std::fs::read_to_string(&file).unwrap();
    assert!(hashed.starts_with("|1|"), "{hashed}");
    connect(&sshd.config(HostKeyPolicy::KnownHosts(hashed), auth())).await;

    // An entry for port 22 does not vouch for another port.
    let wrong_port = format!("127.0.0.1 {}\n", sshd.host_public);
    let error = Session::connect(&sshd.config(HostKeyPolicy::KnownHosts(wrong_port), auth()))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::HostKeyUnknown { .. }), "{error}");
}

#[tokio::test]
async fn trust_on_first_use() {
    let sshd = Sshd::start();
    let auth = || vec![AuthMethod::Password(PASSWORD.into())];
    let first = sshd.config(HostKeyPolicy::TrustOnFirstUse { learned: None }, auth());
    let (_session, learned) = Session::connect(&first).await.unwrap();
    let learned = learned.expect("a key learned on first use");
    assert_eq!(learned.fingerprint, fingerprint_of(&sshd.host_public));
    assert!(
        sshd.host_public.starts_with(&learned.openssh),
        "{learned:?}"
    );

    let again = sshd.config(
        HostKeyPolicy::TrustOnFirstUse {
            learned: Some(learned.openssh.clone()),
        },
        auth(),
    );
    let (_session, relearned) = Session::connect(&again).await.unwrap();
    assert_eq!(relearned, None);

    let (_dir, other) = other_key();
    let changed = sshd.config(
        HostKeyPolicy::TrustOnFirstUse {
            learned: Some(other.clone()),
        },
        auth(),
    );
    let error = Session::connect(&changed).await.unwrap_err();
    let Error::HostKeyMismatch {
        expected,
        presented,
        ..
    } = &error
    else {
        panic!("unexpected {error}")
    };
    assert_eq!(expected, &[fingerprint_of(&other)]);
    assert_eq!(presented, &learned.fingerprint);
}

#[tokio::test]
async fn shell_mode_detects_prompt_and_turns_paging_off() {
    let sshd = Sshd::start();
    let mut config = sshd.password_config();
    config.mode = Mode::Shell;
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let out = session.run("show version").await.unwrap();
    assert_eq!(
        out.text,
        "Arista DCS-7050TX-64\nHardware version: 01.00\nSerial number: JPE00000001\n\
         Software image version: 4.30.1F\nUptime: 2 weeks, 3 days, 4 hours and 5 minutes\n"
    );
    let out = session.run("show interfaces").await.unwrap();
    assert_eq!(out.text.lines().count(), 60, "{}", out.text);
    assert!(!out.text.contains("More"));
    assert!(out.text.starts_with("Ethernet1 is up"));
    assert!(
        out.text
            .ends_with("  30000 packets output, 1920000 bytes\n")
    );
    // A mode change in the prompt still ends the output.
    assert_eq!(session.run("configure").await.unwrap().text, "");
    assert!(
        session
            .run("show version")
            .await
            .unwrap()
            .text
            .contains("4.30.1F")
    );
    assert_eq!(session.run("end").await.unwrap().text, "");
}

#[tokio::test]
async fn shell_mode_answers_the_pager_when_paging_stays_on() {
    let sshd = Sshd::start();
    let mut config = sshd.password_config();
    config.shell.paging_off = Some(Vec::new());
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let out = session.shell_command("show interfaces").await.unwrap();
    let lines: Vec<&str> = out.text.lines().collect();
    assert_eq!(lines.len(), 60, "{}", out.text);
    assert!(!out.text.contains("More"), "{}", out.text);
    assert_eq!(
        lines[20],
        "Ethernet6 is up, line protocol is up (connected)"
    );
}

#[tokio::test]
async fn output_cap_is_a_clear_error() {
    let sshd = Sshd::start();
    let mut config = sshd.password_config();
    config.max_output = 512;
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let error = session.shell_command("show interfaces").await.unwrap_err();
    assert!(
        matches!(error, Error::OutputTooLarge { limit: 512, .. }),
        "{error}"
    );
    let error = session.exec("show interfaces").await.unwrap_err();
    assert!(matches!(error, Error::OutputTooLarge { .. }), "{error}");
}

#[tokio::test]
async fn device_closing_mid_command_is_the_closed_error() {
    let sshd = Sshd::start();
    let (mut session, _) = Session::connect(&sshd.password_config()).await.unwrap();
    assert!(session.shell_command("show version").await.is_ok());
    let error = session.shell_command("crash").await.unwrap_err();
    assert!(
        matches!(&error, Error::Closed { device, .. } if device == "leaf1"),
        "{error}"
    );
    assert!(session.is_closed());
    let error = session.shell_command("show version").await.unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    let error = session.exec("show version").await.unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
}

#[tokio::test]
async fn command_timeout() {
    let sshd = Sshd::start();
    let mut config = sshd.password_config();
    config.timeouts.command = Duration::from_secs(1);
    let (session, _) = Session::connect(&config).await.unwrap();
    let error = session.exec("sleep").await.unwrap_err();
    assert!(
        matches!(&error, Error::CommandTimeout { command, .. } if command == "sleep"),
        "{error}"
    );
    config.timeouts.command = Duration::from_secs(5);
    let (mut session, _) = Session::connect(&config).await.unwrap();
    session.open_shell().await.unwrap();
    session.set_command_timeout(Duration::from_secs(1));
    let error = session.shell_command("sleep").await.unwrap_err();
    assert!(matches!(error, Error::CommandTimeout { .. }), "{error}");
    assert!(!session.is_closed());
}

#[tokio::test]
async fn bad_prompt_pattern_reports_the_last_line() {
    let sshd = Sshd::start();
    let mut config = sshd.password_config();
    config.timeouts.command = Duration::from_secs(1);
    config.shell.prompt = Some(r"router\$".into());
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let error = session.open_shell().await.unwrap_err();
    assert!(
        matches!(&error, Error::PromptNotFound { last_line, .. } if last_line == "leaf1#"),
        "{error}"
    );
}

#[tokio::test]
async fn device_closing_during_exec_is_the_closed_error() {
    let sshd = Sshd::start();
    let session = connect(&sshd.password_config()).await;
    let error = session.exec("crash").await.unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    assert!(session.is_closed());
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let port = free_port();
    let mut config = SessionConfig::new(
        "leaf9",
        "127.0.0.1",
        port,
        USER,
        HostKeyPolicy::TrustOnFirstUse { learned: None },
        Platform::CiscoIos,
    );
    config.auth = vec![AuthMethod::Password(PASSWORD.into())];
    let error = Session::connect(&config).await.unwrap_err();
    assert!(
        matches!(&error, Error::Connect { device, .. } if device == "leaf9"),
        "{error}"
    );
}

/// An old device: SHA-1 kex, `ssh-rsa` host key, CBC cipher only.
const LEGACY_SSHD: &str = "KexAlgorithms diffie-hellman-group14-sha1\nHostKeyAlgorithms ssh-rsa\n\
                           Ciphers aes128-cbc\nMACs hmac-sha2-256\n";

#[tokio::test]
async fn legacy_algorithms_only_when_asked() {
    let sshd = Sshd::start_with(HostKeyType::Rsa, LEGACY_SSHD);
    let mut config = sshd.password_config();
    let error = Session::connect(&config).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");

    config.legacy_algorithms = true;
    let session = connect(&config).await;
    let out = session.exec("show version").await.unwrap();
    assert_eq!(out.exit_status, Some(0));
    let log = sshd.log();
    assert!(log.contains("Accepted password"), "{log}");
}

/// The enable secret of the fake CLI in the enable tests.
const ENABLE_SECRET: &str = "en-s3cret";

#[tokio::test]
async fn enable_secret_answers_the_password_prompt() {
    let sshd = Sshd::start_cli(&format!("--enable-secret {ENABLE_SECRET}"));
    let mut config = sshd.password_config();
    config.shell.enable_secret = Some(EnableSecret::new(ENABLE_SECRET));
    let shown = format!("{config:?}");
    assert!(!shown.contains(ENABLE_SECRET), "{shown}");
    let (mut session, _) = Session::connect(&config).await.unwrap();
    session.open_shell().await.unwrap();
    // Privileged, paging off: the commands run as in a privileged shell.
    let out = session.run("show interfaces").await.unwrap();
    assert_eq!(out.text.lines().count(), 60, "{}", out.text);
    assert!(!out.text.contains(ENABLE_SECRET));
    // `disable` leaves privileged mode; the prompt is still recognised.
    assert_eq!(session.run("disable").await.unwrap().text, "");
}

#[tokio::test]
async fn wrong_enable_secret_is_a_clear_error_without_the_secret() {
    // IOS style: asks three times, then `% Bad secrets`; the session gives up at the
    // second prompt rather than send the same secret again.
    let sshd = Sshd::start_cli(&format!("--enable-secret {ENABLE_SECRET}"));
    let mut config = sshd.password_config();
    config.shell.enable_secret = Some(EnableSecret::new("wrong-one"));
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let error = session.open_shell().await.unwrap_err();
    let Error::EnableDenied { device, reason } = &error else {
        panic!("unexpected {error}")
    };
    assert_eq!(device, "leaf1");
    assert!(reason.contains("asked for it again"), "{reason}");
    let message = error.to_string();
    assert!(message.contains("leaf1"), "{message}");
    assert!(!message.contains("wrong-one"), "{message}");

    // EOS style: `% Access denied` at once, back at `leaf1>`.
    let sshd = Sshd::start_cli(&format!(
        "--enable-secret {ENABLE_SECRET} --enable-style eos"
    ));
    let mut config = sshd.password_config();
    config.shell.enable_secret = Some(EnableSecret::new("wrong-one"));
    let (mut session, _) = Session::connect(&config).await.unwrap();
    let error = session.shell_command("show version").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "enable on leaf1 was refused: the enable secret was not accepted; \
         device said \"% Access denied\""
    );
}

#[tokio::test]
async fn an_enable_password_prompt_without_a_secret_says_one_is_needed() {
    let sshd = Sshd::start_cli(&format!("--enable-secret {ENABLE_SECRET}"));
    let (mut session, _) = Session::connect(&sshd.password_config()).await.unwrap();
    let error = session.open_shell().await.unwrap_err();
    assert!(
        matches!(&error, Error::EnableSecretRequired { device } if device == "leaf1"),
        "{error}"
    );
    assert!(error.to_string().contains("enable secret"), "{error}");
}
