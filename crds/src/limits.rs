//! Sizes and patterns shared by the CRD schema and the Rust validation, so the API server and
//! `validate()` refuse the same values.
//!
//! Patterns are RE2 (the dialect of the API server) and avoid anything RE2 lacks. Every list
//! and string that a CEL rule reads is bounded: the API server estimates the cost of each rule
//! from these bounds and refuses CRDs whose rules could run too long.

/// Longest prompt pattern of an SSH block.
pub const MAX_PROMPT_LEN: u32 = 256;

/// Longest Kubernetes object name, host name or device address.
pub const MAX_NAME_LEN: u32 = 253;

/// Longest subscription path.
pub const MAX_PATH_LEN: u32 = 1024;

/// Longest duration string.
pub const MAX_DURATION_LEN: u32 = 32;

/// Longest SSH command line.
pub const MAX_COMMAND_LEN: u32 = 1024;

/// Longest host key line.
pub const MAX_HOST_KEY_LEN: u32 = 16384;

/// Most subscriptions per device.
pub const MAX_SUBSCRIPTIONS: u32 = 256;

/// Most SSH commands per device.
pub const MAX_COMMANDS: u32 = 64;

/// Largest placement weight of a device.
pub const MAX_WEIGHT: u32 = 10_000;

/// A Kubernetes object name (RFC 1123 subdomain), for Secret and pool names.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key inside a Secret.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// A device address: DNS host name (whose last label is not all digits), IPv4 literal, or
/// IPv6 literal (loosely: hex digits, dots and at least two colons). Never a port.
///
/// The Rust check ([`crate::validate_address`]) is exact where this pattern is loose: it
/// refuses IPv6-looking strings that are not IPv6 addresses, and labels over 63 characters.
pub const ADDRESS_PATTERN: &str = concat!(
    "^(",
    // host name: labels, the last one containing a letter
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*",
    r"([A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?|[0-9][A-Za-z0-9-]*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)",
    // IPv4
    r"|(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    // IPv6
    r"|[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*",
    ")$"
);

/// A subscription path: optional origin, then `/`. The full grammar is checked by
/// [`model::Path`]'s parser in `validate()` and by the collector.
pub const PATH_PATTERN: &str = r"^([^/:]+:)?/";

/// An OpenSSH public key line: key type, base64 key, optional comment.
pub const HOST_KEY_PATTERN: &str = r"^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}( .*)?$";
