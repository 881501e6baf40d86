//! SSH/CLI collection (issue 7): russh sessions to network devices (authentication,
//! host-key verification, exec and interactive-shell modes with prompt detection and
//! paging disabled), and parsing of show-command output with TextFSM into the same
//! canonical series as gNMI.
//!
//! - [`session`]: one SSH session to one device, and the commands run over it.
//! - [`parse`]: TextFSM templates, platform detection, and the mapping of parsed tables
//!   to OpenConfig paths.

pub mod parse;
pub mod session;

/// A network operating system, named as the `ntc-templates` index names platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Arista EOS.
    AristaEos,
    /// Cisco IOS and IOS-XE.
    CiscoIos,
}

impl Platform {
    /// Every platform netpulse knows.
    pub const ALL: [Platform; 2] = [Platform::AristaEos, Platform::CiscoIos];

    /// The name used in template indexes and Device specs: `arista_eos`, `cisco_ios`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::AristaEos => "arista_eos",
            Platform::CiscoIos => "cisco_ios",
        }
    }

    /// The platform of a name as [`Platform::as_str`] gives it.
    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
