//! Host-key verification: pinned keys, `known_hosts` content, and trust on first use.
//!
//! Pure functions over parsed keys: `Checker::verify` decides, the russh handler only records
//! the verdict so that [`super::Session::connect`] can turn a refusal into a clear error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use russh::keys::{HashAlg, PublicKey};

/// How the server's host key is checked. There is no accept-all variant: trusting an
/// unknown key is always [`HostKeyPolicy::TrustOnFirstUse`], whose learned key the caller
/// must store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Accept only these keys, each in OpenSSH public-key format
    /// (`ssh-ed25519 AAAA... [comment]`).
    Pinned(Vec<String>),
    /// Accept the keys an OpenSSH `known_hosts` file (its content, not its path) lists
    /// for the host: plain names, `[host]:port`, wildcards, negations and hashed
    /// (`|1|salt|hash`) entries; `@revoked` keys are refused, `@cert-authority` lines
    /// are ignored.
    KnownHosts(String),
    /// Trust on first use: with no previously learned key, accept the presented one and
    /// return it from [`super::Session::connect`] for the caller to record; with a learned
    /// key (OpenSSH format), refuse any other.
    TrustOnFirstUse {
        /// The key learned on an earlier first connection, if any.
        learned: Option<String>,
    },
}

/// A host key accepted on first use, for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedHostKey {
    /// The key in OpenSSH public-key format, without a comment (`ssh-ed25519 AAAA...`).
    pub openssh: String,
    /// Its SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
    pub fingerprint: String,
}

impl LearnedHostKey {
    /// A key recorded earlier, in OpenSSH public-key format (a comment is dropped), with
    /// its fingerprint.
    pub fn from_openssh(line: &str) -> Result<LearnedHostKey, String> {
        let mut key = parse_openssh(line)?;
        key.set_comment("");
        let openssh = key
            .to_openssh()
            .map_err(|error| format!("cannot write public key {line:?}: {error}"))?;
        Ok(LearnedHostKey {
            openssh: openssh.trim().to_owned(),
            fingerprint: fingerprint(&key),
        })
    }

    /// The key's algorithm as OpenSSH names it (`ssh-ed25519`, `rsa-sha2-512` keys are
    /// `ssh-rsa`).
    pub fn algorithm(&self) -> &str {
        self.openssh.split_whitespace().next().unwrap_or_default()
    }
}

/// The SHA-256 fingerprint of a key as OpenSSH prints it: `SHA256:` and unpadded base64.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses an OpenSSH public key line (`type base64 [comment]`).
pub(crate) fn parse_openssh(line: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(line.trim())
        .map_err(|error| format!("invalid public key {line:?}: {error}"))
}

/// A policy with its keys parsed, checked once before connecting.
#[derive(Debug, Clone)]
pub(crate) enum Checker {
    Pinned(Vec<PublicKey>),
    KnownHosts(Vec<KnownHostsLine>),
    Tofu(Option<PublicKey>),
}

/// The outcome of checking a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is trusted.
    Trusted,
    /// The key is trusted because nothing was known: record it.
    Learned(LearnedHostKey),
    /// A different key is expected (fingerprints of the expected keys).
    Mismatch {
        expected: Vec<String>,
        presented: String,
    },
    /// Nothing is known about this host.
    Unknown { presented: String },
    /// The key is marked `@revoked`.
    Revoked { presented: String },
}

impl Checker {
    /// Parses the keys a policy names; an error is a configuration error.
    pub(crate) fn new(policy: &HostKeyPolicy) -> Result<Checker, String> {
        Ok(match policy {
            HostKeyPolicy::Pinned(keys) => {
                if keys.is_empty() {
                    return Err("no pinned host key given".to_owned());
                }
                Checker::Pinned(
                    keys.iter()
                        .map(|k| parse_openssh(k))
                        .collect::<Result<_, _>>()?,
                )
            }
            HostKeyPolicy::KnownHosts(content) => Checker::KnownHosts(parse_known_hosts(content)?),
            HostKeyPolicy::TrustOnFirstUse { learned } => {
                Checker::Tofu(learned.as_deref().map(parse_openssh).transpose()?)
            }
        })
    }

    /// Checks the key `host:port` presented.
    pub(crate) fn verify(&self, host: &str, port: u16, presented: &PublicKey) -> Verdict {
        let presented_fp = fingerprint(presented);
        let same = |k: &PublicKey| k.key_data() == presented.key_data();
        match self {
            Checker::Pinned(keys) => {
                if keys.iter().any(same) {
                    Verdict::Trusted
                } else {
                    Verdict::Mismatch {
                        expected: keys.iter().map(fingerprint).collect(),
                        presented: presented_fp,
                    }
                }
            }
            Checker::Tofu(Some(key)) => {
                if same(key) {
                    Verdict::Trusted
                } else {
                    Verdict::Mismatch {
                        expected: vec![fingerprint(key)],
                        presented: presented_fp,
                    }
                }
            }
            Checker::Tofu(None) => {
                let mut bare = presented.clone();
                bare.set_comment("");
                match bare.to_openssh() {
                    Ok(openssh) => Verdict::Learned(LearnedHostKey {
                        openssh: openssh.trim().to_owned(),
                        fingerprint: presented_fp,
                    }),
                    // A key we cannot write down cannot be pinned later: refuse it.
                    Err(_) => Verdict::Unknown {
                        presented: presented_fp,
                    },
                }
            }
            Checker::KnownHosts(lines) => {
                let name = host_port(host, port);
                let matching: Vec<&KnownHostsLine> =
                    lines.iter().filter(|l| l.matches_host(&name)).collect();
                if matching.iter().any(|l| l.revoked && same(&l.key)) {
                    return Verdict::Revoked {
                        presented: presented_fp,
                    };
                }
                let trusted: Vec<&KnownHostsLine> =
                    matching.into_iter().filter(|l| !l.revoked).collect();
                if trusted.iter().any(|l| same(&l.key)) {
                    Verdict::Trusted
                } else if trusted.is_empty() {
                    Verdict::Unknown {
                        presented: presented_fp,
                    }
                } else {
                    Verdict::Mismatch {
                        expected: trusted.iter().map(|l| fingerprint(&l.key)).collect(),
                        presented: presented_fp,
                    }
                }
            }
        }
    }
}

/// The name OpenSSH looks up in `known_hosts`: `host` on port 22, `[host]:port` otherwise.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// One usable line of a `known_hosts` file.
#[derive(Debug, Clone)]
pub(crate) struct KnownHostsLine {
    patterns: Vec<HostPattern>,
    key: PublicKey,
    revoked: bool,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Plain { pattern: String, negated: bool },
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// Parses `known_hosts` content, skipping comments, blank lines, `@cert-authority`
/// lines and lines with key types this build cannot parse (as OpenSSH skips them).
pub(crate) fn parse_known_hosts(content: &str) -> Result<Vec<KnownHostsLine>, String> {
    let mut lines = Vec::new();
    for (number, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                "@cert-authority" => continue,
                other => {
                    return Err(format!(
                        "known_hosts line {}: unknown marker {other}",
                        number + 1
                    ));
                }
            }
            first = fields.next().unwrap_or_default();
        }
        let rest: Vec<&str> = fields.collect();
        if rest.len() < 2 {
            return Err(format!(
                "known_hosts line {}: expected hosts, key type and key",
                number + 1
            ));
        }
        let Ok(key) = PublicKey::from_openssh(&rest.join(" ")) else {
            continue;
        };
        let patterns = first
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| parse_pattern(p).map_err(|e| format!("known_hosts line {}: {e}", number + 1)))
            .collect::<Result<_, _>>()?;
        lines.push(KnownHostsLine {
            patterns,
            key,
            revoked,
        });
    }
    Ok(lines)
}

fn parse_pattern(pattern: &str) -> Result<HostPattern, String> {
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        let (salt, hash) = hashed.split_once('|').ok_or("hashed host without a hash")?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|e| format!("hashed host salt: {e}"))?;
        let hash = STANDARD
            .decode(hash)
            .map_err(|e| format!("hashed host hash: {e}"))?;
        return Ok(HostPattern::Hashed { salt, hash });
    }
    match pattern.strip_prefix('!') {
        Some(p) => Ok(HostPattern::Plain {
            pattern: p.to_ascii_lowercase(),
            negated: true,
        }),
        None => Ok(HostPattern::Plain {
            pattern: pattern.to_ascii_lowercase(),
            negated: false,
        }),
    }
}

impl KnownHostsLine {
    /// OpenSSH semantics: some pattern matches and no negated pattern does.
    fn matches_host(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let mut matched = false;
        for pattern in &self.patterns {
            match pattern {
                HostPattern::Plain { pattern, negated } => {
                    if wildcard_match(pattern.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        matched = true;
                    }
                }
                HostPattern::Hashed { salt, hash } => {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                    if ring::hmac::verify(&key, name.as_bytes(), hash).is_ok() {
                        matched = true;
                    }
                }
            }
        }
        matched
    }
}

/// `*` and `?` glob matching, as in OpenSSH host patterns.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| wildcard_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && wildcard_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && wildcard_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // Generated for these tests with ssh-keygen; not used anywhere else.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINGFRNsupMMU8xEuiaWPAUiu+5i87u+/CRJhPVNvOfCM a";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIdC2EzZW8uGiv+AYcz7y2SwGP7ChR9Q6IJgDX0PbEwk b";

    fn key(s: &str) -> PublicKey {
        parse_openssh(s).unwrap()
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&k, name.as_bytes());
        format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(tag.as_ref())
        )
    }

    #[test]
    fn pinned_accepts_the_key_and_refuses_another() {
        let c = Checker::new(&HostKeyPolicy::Pinned(vec![KEY_A.to_owned()])).unwrap();
        assert_eq!(c.verify("h", 22, &key(KEY_A)), Verdict::Trusted);
        match c.verify("h", 22, &key(KEY_B)) {
            Verdict::Mismatch {
                expected,
                presented,
            } => {
                assert_eq!(expected, vec![fingerprint(&key(KEY_A))]);
                assert_eq!(presented, fingerprint(&key(KEY_B)));
                assert!(presented.starts_with("SHA256:"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn invalid_pinned_key_is_a_config_error() {
        assert!(Checker::new(&HostKeyPolicy::Pinned(vec!["ssh-ed25519 nope".into()])).is_err());
        assert!(Checker::new(&HostKeyPolicy::Pinned(vec![])).is_err());
    }

    #[test]
    fn tofu_learns_then_enforces() {
        let c = Checker::new(&HostKeyPolicy::TrustOnFirstUse { learned: None }).unwrap();
        let Verdict::Learned(learned) = c.verify("h", 22, &key(KEY_A)) else {
            panic!("not learned")
        };
        assert_eq!(learned.openssh, KEY_A.trim_end_matches(" a"));
        // Read back from its record: the same key, fingerprint and algorithm.
        assert_eq!(LearnedHostKey::from_openssh(KEY_A).unwrap(), learned);
        assert_eq!(learned.algorithm(), "ssh-ed25519");
        assert!(LearnedHostKey::from_openssh("ssh-ed25519 nope").is_err());
        let c = Checker::new(&HostKeyPolicy::TrustOnFirstUse {
            learned: Some(learned.openssh),
        })
        .unwrap();
        assert_eq!(c.verify("h", 22, &key(KEY_A)), Verdict::Trusted);
        assert!(matches!(
            c.verify("h", 22, &key(KEY_B)),
            Verdict::Mismatch { .. }
        ));
    }

    #[test]
    fn known_hosts_table() {
        let hashed_line = format!(
            "{} {KEY_A}",
            hashed("[10.0.0.9]:2222", b"0123456789abcdefghij")
        );
        let content = format!(
            "# comment\n\nleaf1,10.0.0.1 {KEY_A}\n[leaf2]:2222 {KEY_B}\n*.lab,!bad.lab {KEY_A}\n\
             {hashed_line}\n@revoked leaf3 {KEY_A}\n@cert-authority * {KEY_B}\nweird ssh-foo AAAA\n"
        );
        let c = Checker::new(&HostKeyPolicy::KnownHosts(content)).unwrap();
        let cases: &[(&str, u16, &str, &str)] = &[
            ("leaf1", 22, KEY_A, "trusted"),
            ("LEAF1", 22, KEY_A, "trusted"),
            ("10.0.0.1", 22, KEY_B, "mismatch"),
            ("leaf1", 2222, KEY_A, "unknown"),
            ("leaf2", 2222, KEY_B, "trusted"),
            ("leaf2", 22, KEY_B, "unknown"),
            ("x.lab", 22, KEY_A, "trusted"),
            ("bad.lab", 22, KEY_A, "unknown"),
            ("10.0.0.9", 2222, KEY_A, "trusted"),
            ("10.0.0.9", 2222, KEY_B, "mismatch"),
            ("10.0.0.9", 22, KEY_A, "unknown"),
            ("leaf3", 22, KEY_A, "revoked"),
            ("other", 22, KEY_A, "unknown"),
        ];
        for (host, port, presented, want) in cases {
            let got = match c.verify(host, *port, &key(presented)) {
                Verdict::Trusted => "trusted",
                Verdict::Mismatch { .. } => "mismatch",
                Verdict::Unknown { .. } => "unknown",
                Verdict::Revoked { .. } => "revoked",
                Verdict::Learned(_) => "learned",
            };
            assert_eq!(got, *want, "{host}:{port}");
        }
    }

    #[test]
    fn malformed_known_hosts_is_an_error() {
        assert!(parse_known_hosts("justonefield\n").is_err());
        assert!(parse_known_hosts("@bogus h ssh-ed25519 AAAA\n").is_err());
    }
}
