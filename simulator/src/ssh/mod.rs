//! The SSH face of the simulated devices: a russh server per device address, with a
//! vendor-style CLI whose output matches what the same device serves over gNMI.
//!
//! Two platform styles are rendered, Arista EOS-like and Cisco IOS-like, following the
//! formats the `ntc-templates` TextFSM templates `<platform>_show_version`,
//! `_show_interfaces` and `_show_lldp_neighbors` parse. Interface names are the gNMI
//! names (`Ethernet1`, ...) on both platforms and are never abbreviated, so the two sides
//! join without a name mapping.
//!
//! The CLI (see [`server`]): exec requests run one command and close with exit status 0;
//! a shell (with or without a PTY) prints a banner and starts in user mode (`host>`);
//! `enable` goes to privileged mode (`host#`), which `show running-config` needs, after
//! asking `Password:` when [`SshConfig::enable_password`] is set (a wrong one gets
//! `% Access denied` and user mode again); `disable` goes back; `exit`, `quit` and `logout` close.
//! Output longer than a page stops at ` --More-- ` until the client sends a space (next
//! page), Enter (next line) or anything else (stop); `terminal length 0` turns paging
//! off. The page length is the PTY's row count less one (24 without a PTY size).

mod render;
mod server;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;

pub(crate) use render::{Command, ENABLE_DENIED, ENABLE_PASSWORD_PROMPT, View};
pub(crate) use server::{Cli, Settings, methods, serve};

use crate::fabric::Role;

/// Username accepted when the fleet has no credentials.
pub const DEFAULT_SSH_USERNAME: &str = "admin";
/// Password accepted when the fleet has no credentials.
pub const DEFAULT_SSH_PASSWORD: &str = "admin";
/// Mixes the fleet seed into the host key seed, so the key differs from other seeded values.
const HOST_KEY_SALT: u64 = 0x5353_485f_484f_5354;

/// The CLI style of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Arista EOS-like output.
    AristaEos,
    /// Cisco IOS-like output.
    CiscoIos,
}

impl Platform {
    /// `arista_eos` or `cisco_ios`, as netmiko and ntc-templates name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::AristaEos => "arista_eos",
            Platform::CiscoIos => "cisco_ios",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a platform name was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform {0:?}: one of arista_eos, cisco_ios")]
pub struct ParsePlatformError(String);

impl FromStr for Platform {
    type Err = ParsePlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "arista_eos" | "eos" => Ok(Platform::AristaEos),
            "cisco_ios" | "ios" => Ok(Platform::CiscoIos),
            other => Err(ParsePlatformError(other.to_owned())),
        }
    }
}

/// Which device gets which platform; always deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformMix {
    /// Spines get `spine`, leaves get `leaf`.
    ByRole {
        /// Platform of spines.
        spine: Platform,
        /// Platform of leaves.
        leaf: Platform,
    },
    /// Every device gets the same platform.
    All(Platform),
    /// Even device indexes (0-based) are EOS, odd ones IOS.
    Alternate,
}

impl Default for PlatformMix {
    fn default() -> Self {
        PlatformMix::ByRole {
            spine: Platform::AristaEos,
            leaf: Platform::CiscoIos,
        }
    }
}

impl PlatformMix {
    /// The platform of device `index` with role `role`.
    pub fn platform(self, index: usize, role: Role) -> Platform {
        match self {
            PlatformMix::ByRole { spine, leaf } => match role {
                Role::Spine => spine,
                Role::Leaf => leaf,
            },
            PlatformMix::All(p) => p,
            PlatformMix::Alternate if index.is_multiple_of(2) => Platform::AristaEos,
            PlatformMix::Alternate => Platform::CiscoIos,
        }
    }
}

/// How devices serve SSH (see [`crate::FleetConfig::ssh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// SSH port of every device; 0 gives each device an ephemeral port.
    pub port: u16,
    /// Which device renders which vendor's CLI.
    pub platforms: PlatformMix,
    /// Close a session after this long without traffic either way (a misbehaviour
    /// devices really have); `None` never does.
    pub idle_timeout: Option<Duration>,
    /// Public keys (OpenSSH one-line form, comment optional) accepted for public-key
    /// authentication, for any username.
    pub authorized_keys: Vec<String>,
    /// Every this long, one interface description changes (cycling through the
    /// interfaces), so `show running-config` differs between periods; `None`: never.
    pub config_change_every: Option<Duration>,
    /// Wait this long before sending each command's output (a slow device).
    pub slow_output: Option<Duration>,
    /// Most SSH connections open at once, fleet-wide; more are closed on accept.
    pub max_sessions: usize,
    /// The password `enable` asks for (an enable secret); `None`: `enable` asks nothing.
    pub enable_password: Option<String>,
}

impl Default for SshConfig {
    fn default() -> Self {
        Self {
            port: 2222,
            platforms: PlatformMix::default(),
            idle_timeout: None,
            authorized_keys: Vec::new(),
            config_change_every: Some(Duration::from_secs(15 * 60)),
            slow_output: None,
            max_sessions: 4096,
            enable_password: None,
        }
    }
}

/// The fleet's ed25519 host key, derived from the seed: the same seed gives the same key,
/// so clients can pin it across restarts. Not a secret: anyone with the seed has it.
pub(crate) fn host_key(seed: u64) -> PrivateKey {
    let mut rng = fastrand::Rng::with_seed(seed ^ HOST_KEY_SALT);
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    PrivateKey::from(Ed25519Keypair::from_seed(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_follows_the_seed() {
        let a = host_key(1).public_key().to_openssh().unwrap();
        assert_eq!(a, host_key(1).public_key().to_openssh().unwrap());
        assert_ne!(a, host_key(2).public_key().to_openssh().unwrap());
        assert!(a.starts_with("ssh-ed25519 "), "{a}");
    }

    #[test]
    fn platform_mix_is_by_role_or_index() {
        let mix = PlatformMix::default();
        assert_eq!(mix.platform(0, Role::Spine), Platform::AristaEos);
        assert_eq!(mix.platform(0, Role::Leaf), Platform::CiscoIos);
        assert_eq!(
            PlatformMix::Alternate.platform(3, Role::Spine),
            Platform::CiscoIos
        );
        assert_eq!("cisco_ios".parse(), Ok(Platform::CiscoIos));
        assert!("junos".parse::<Platform>().is_err());
    }
}
