//! Validation in Rust of what the CRD schema and its CEL rules check in the API server, for
//! specs that never pass through one (the single-node devices file) and for the operator.

use std::fmt;
use std::net::IpAddr;

use crate::device::{DeviceSpec, GnmiSpec, SecretRef, SshSpec, Subscription, SubscriptionMode};
use crate::duration::{check_interval, parse_duration};
use crate::limits::{
    MAX_COMMAND_LEN, MAX_COMMANDS, MAX_HOST_KEY_LEN, MAX_NAME_LEN, MAX_PATH_LEN, MAX_PROMPT_LEN,
    MAX_SUBSCRIPTIONS, MAX_WEIGHT,
};
use crate::pool::{CollectorPoolSpec, MAX_LOAD_FACTOR};
use crate::secret::SecretKeyRef;

/// One problem with one field of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field within the spec, as written in YAML: `gnmi.port`,
    /// `gnmi.subscriptions[0].sampleInterval`.
    pub field: String,
    /// What is wrong, in plain words.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Collects field errors during one validation pass.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.push(field, message);
        }
    }

    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

impl DeviceSpec {
    /// Checks everything the CRD schema and CEL rules check, and what they cannot: that
    /// addresses are exact IP literals, and that each subscription path parses. Returns every
    /// problem found, not just the first.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        errors.check("address", validate_address(&self.address));
        if let Some(pool) = &self.pool {
            errors.check("pool", validate_object_name(pool));
        }
        if let Some(credentials) = &self.credentials {
            validate_secret_ref(&mut errors, "credentials", credentials);
        }
        validate_gnmi(&mut errors, &self.gnmi);
        if let Some(ssh) = &self.ssh {
            validate_ssh(&mut errors, ssh);
        }
        if !self.gnmi.enabled && self.ssh.is_none() {
            errors.push(
                "gnmi.enabled",
                "nothing to collect: keep gnmi enabled or add an ssh block",
            );
        }
        if let Some(weight) = self.weight
            && !(1..=MAX_WEIGHT).contains(&weight)
        {
            errors.push(
                "weight",
                format!("invalid value {weight}, expected 1..={MAX_WEIGHT}"),
            );
        }
        errors.finish()
    }
}

fn validate_gnmi(errors: &mut Errors, gnmi: &GnmiSpec) {
    errors.check("gnmi.port", validate_port(gnmi.port));
    if gnmi.insecure && gnmi.tls.is_some() {
        errors.push(
            "gnmi.tls",
            "must not be set when gnmi.insecure is true (insecure turns TLS off)",
        );
    }
    if let Some(tls) = &gnmi.tls {
        for (field, value) in [
            ("gnmi.tls.caSecret", &tls.ca_secret),
            ("gnmi.tls.clientCertSecret", &tls.client_cert_secret),
        ] {
            if let Some(name) = value {
                errors.check(field, validate_object_name(name));
            }
        }
        if let Some(server_name) = &tls.server_name {
            errors.check("gnmi.tls.serverName", validate_address(server_name));
        }
    }
    if gnmi.enabled && gnmi.subscriptions.is_empty() {
        errors.push(
            "gnmi.subscriptions",
            "at least one subscription is required while gnmi is enabled",
        );
    }
    if gnmi.subscriptions.len() > MAX_SUBSCRIPTIONS as usize {
        errors.push(
            "gnmi.subscriptions",
            format!("at most {MAX_SUBSCRIPTIONS} subscriptions are allowed"),
        );
    }
    for (i, subscription) in gnmi.subscriptions.iter().enumerate() {
        validate_subscription(errors, &format!("gnmi.subscriptions[{i}]"), subscription);
    }
    if let Some(interval) = &gnmi.poll_interval {
        if gnmi.mode.is_stream() {
            errors.push("gnmi.pollInterval", "applies only to mode poll or once");
        } else {
            errors.check("gnmi.pollInterval", check_interval(interval).map(drop));
        }
    }
}

fn validate_subscription(errors: &mut Errors, at: &str, subscription: &Subscription) {
    if subscription.path.len() > MAX_PATH_LEN as usize {
        errors.push(
            format!("{at}.path"),
            format!("must be at most {MAX_PATH_LEN} characters"),
        );
    } else if let Err(e) = subscription.path.parse::<model::Path>() {
        errors.push(format!("{at}.path"), e.to_string());
    }
    for (name, value) in [
        ("sampleInterval", &subscription.sample_interval),
        ("heartbeatInterval", &subscription.heartbeat_interval),
    ] {
        if let Some(value) = value {
            errors.check(format!("{at}.{name}"), check_interval(value).map(drop));
        }
    }
    if subscription.mode != SubscriptionMode::Sample {
        if subscription.sample_interval.is_some() {
            errors.push(
                format!("{at}.sampleInterval"),
                "applies only to mode sample",
            );
        }
        if subscription.suppress_redundant {
            errors.push(
                format!("{at}.suppressRedundant"),
                "applies only to mode sample",
            );
        }
    }
}

fn validate_ssh(errors: &mut Errors, ssh: &SshSpec) {
    errors.check("ssh.port", validate_port(ssh.port));
    if let Some(host_key) = &ssh.host_key {
        errors.check("ssh.hostKey", validate_host_key(host_key));
    }
    if let Some(secret) = &ssh.known_hosts_secret {
        validate_secret_key_ref(errors, "ssh.knownHostsSecret", secret);
    }
    if ssh.host_key.is_none() && ssh.known_hosts_secret.is_none() && !ssh.trust_on_first_use {
        errors.push(
            "ssh",
            "needs a way to verify the host key: set hostKey, knownHostsSecret or trustOnFirstUse: true",
        );
    }
    if ssh.commands.is_empty() {
        errors.push("ssh.commands", "at least one command is required");
    }
    if ssh.commands.len() > MAX_COMMANDS as usize {
        errors.push(
            "ssh.commands",
            format!("at most {MAX_COMMANDS} commands are allowed"),
        );
    }
    for (i, command) in ssh.commands.iter().enumerate() {
        let at = format!("ssh.commands[{i}]");
        if command.command.trim().is_empty() {
            errors.push(format!("{at}.command"), "must not be empty");
        } else if command.command.len() > MAX_COMMAND_LEN as usize {
            errors.push(
                format!("{at}.command"),
                format!("must be at most {MAX_COMMAND_LEN} characters"),
            );
        }
        errors.check(
            format!("{at}.interval"),
            check_interval(&command.interval).map(drop),
        );
    }
    if let Some(prompt) = &ssh.prompt {
        if prompt.is_empty() || prompt.len() > MAX_PROMPT_LEN as usize {
            errors.push(
                "ssh.prompt",
                format!("must be 1 to {MAX_PROMPT_LEN} characters"),
            );
        } else if let Err(e) = regex::Regex::new(prompt) {
            errors.push(
                "ssh.prompt",
                format!("is not a valid regular expression: {e}"),
            );
        }
    }
    if let Some(group) = &ssh.aaa_group {
        errors.check("ssh.aaaGroup", validate_secret_key(group));
    }
    if let Some(secret) = &ssh.private_key_secret {
        validate_secret_key_ref(errors, "ssh.privateKeySecret", secret);
    }
}

fn validate_secret_ref(errors: &mut Errors, at: &str, secret: &SecretRef) {
    errors.check(format!("{at}.name"), validate_object_name(&secret.name));
    for (name, key) in [
        ("usernameKey", &secret.username_key),
        ("passwordKey", &secret.password_key),
    ] {
        if let Some(key) = key {
            errors.check(format!("{at}.{name}"), validate_secret_key(key));
        }
    }
}

fn validate_secret_key_ref(errors: &mut Errors, at: &str, secret: &SecretKeyRef) {
    errors.check(format!("{at}.name"), validate_object_name(&secret.name));
    if let Some(key) = &secret.key {
        errors.check(format!("{at}.key"), validate_secret_key(key));
    }
}

fn validate_port(port: u16) -> Result<(), String> {
    if port == 0 {
        Err("invalid value 0, expected 1..=65535".to_owned())
    } else {
        Ok(())
    }
}

/// Checks a device address: an IPv4 or IPv6 literal, or a DNS host name, without a port.
/// The message says what is wrong, e.g. that a port was given.
pub fn validate_address(address: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if address.len() > MAX_NAME_LEN as usize {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if address.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if let Some((host, port)) = address.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        let bracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<IpAddr>().is_ok());
        if bracketed || host.parse::<IpAddr>().is_ok() || validate_host_name(host).is_ok() {
            return Err(format!(
                "invalid address {address:?}: must not include a port; \
                 set gnmi.port or ssh.port instead"
            ));
        }
    }
    if address.contains("://") {
        return Err(format!(
            "invalid address {address:?}: write a host name or IP address, not a URL"
        ));
    }
    if address.contains(':') {
        return Err(format!("invalid address {address:?}: not an IPv6 address"));
    }
    if address.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("invalid address {address:?}: not an IPv4 address"));
    }
    validate_host_name(address)
        .map_err(|reason| format!("invalid address {address:?}: not a DNS host name: {reason}"))
}

fn validate_host_name(name: &str) -> Result<(), &'static str> {
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label must start and end with a letter or digit");
        }
    }
    if labels
        .last()
        .is_some_and(|last| !last.bytes().any(|b| b.is_ascii_alphabetic()))
    {
        return Err("the last label must contain a letter");
    }
    Ok(())
}

/// Checks a Kubernetes object name (RFC 1123 subdomain).
fn validate_object_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN as usize
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit"
        ))
    }
}

fn validate_secret_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_NAME_LEN as usize
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid Secret key {key:?}: use letters, digits, '-', '_' and '.'"
        ))
    }
}

fn validate_host_key(key: &str) -> Result<(), String> {
    let mut parts = key.splitn(3, ' ');
    let kind = parts.next().unwrap_or_default();
    let blob = parts.next().unwrap_or_default();
    let kind_ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"@.-".contains(&b));
    let body = blob.trim_end_matches('=');
    let blob_ok = !body.is_empty()
        && blob.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if key.len() > MAX_HOST_KEY_LEN as usize || !kind_ok || !blob_ok {
        return Err("expected an OpenSSH public key line: \"ssh-ed25519 AAAAC3Nza...\"".to_owned());
    }
    Ok(())
}

impl CollectorPoolSpec {
    /// Checks everything the CRD schema and CEL rules check, and that retention periods grow
    /// with coarser resolutions (which CEL cannot compare for `d` units).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.image.trim().is_empty() {
            errors.push("image", "must not be empty");
        }
        let c = &self.collectors;
        for (field, value, min) in [
            ("collectors.minReplicas", c.min_replicas, 0),
            ("collectors.maxReplicas", c.max_replicas, 1),
            ("collectors.devicesPerReplica", c.devices_per_replica, 1),
        ] {
            if value < min {
                errors.push(
                    field,
                    format!("invalid value {value}, must be at least {min}"),
                );
            }
        }
        if c.min_replicas > c.max_replicas {
            errors.push(
                "collectors.minReplicas",
                "must not exceed collectors.maxReplicas",
            );
        }
        if let Some(replicas) = c.replicas
            && !(c.min_replicas..=c.max_replicas).contains(&replicas)
        {
            errors.push(
                "collectors.replicas",
                format!(
                    "invalid value {replicas}, expected {}..={}",
                    c.min_replicas, c.max_replicas
                ),
            );
        }
        if let Some(replicas) = self.web.replicas
            && replicas < 0
        {
            errors.push("web.replicas", "must not be negative");
        }
        if self.web.replicas.is_some() && self.web.autoscaling.is_some() {
            errors.push(
                "web.autoscaling",
                "web.replicas and web.autoscaling are mutually exclusive",
            );
        }
        if let Some(hpa) = &self.web.autoscaling {
            if hpa.min_replicas < 1 {
                errors.push("web.autoscaling.minReplicas", "must be at least 1");
            }
            if hpa.min_replicas > hpa.max_replicas {
                errors.push("web.autoscaling.minReplicas", "must not exceed maxReplicas");
            }
            if !(1..=100).contains(&hpa.target_cpu_utilization_percentage) {
                errors.push(
                    "web.autoscaling.targetCPUUtilizationPercentage",
                    "expected 1..=100",
                );
            }
        }
        validate_secret_key_ref(&mut errors, "redis.urlSecret", &self.redis.url_secret);
        validate_secret_key_ref(&mut errors, "database.urlSecret", &self.database.url_secret);
        let factor = self.placement.max_load_factor.0;
        if !(factor > 1.0 && factor <= MAX_LOAD_FACTOR) {
            errors.push(
                "placement.maxLoadFactor",
                format!("invalid value {factor}, must be greater than 1 and at most 10"),
            );
        }
        let mut previous: Option<(&str, std::time::Duration)> = None;
        for (field, value) in [
            ("retention.raw", &self.retention.raw),
            ("retention.oneMinute", &self.retention.one_minute),
            ("retention.oneHour", &self.retention.one_hour),
        ] {
            match parse_duration(value) {
                Err(e) => errors.push(field, e.to_string()),
                Ok(d) if d.is_zero() => errors.push(field, "must be longer than zero"),
                Ok(d) => {
                    if let Some((shorter, p)) = previous
                        && d < p
                    {
                        errors.push(field, format!("must be at least as long as {shorter}"));
                    }
                    previous = Some((field, d));
                }
            }
        }
        errors.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{SshCommand, SshMode, TlsSpec};
    use crate::limits::ADDRESS_PATTERN;

    fn fields(result: Result<(), Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("should be invalid")
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn ssh() -> SshSpec {
        SshSpec {
            port: 22,
            host_key: None,
            known_hosts_secret: None,
            trust_on_first_use: true,
            commands: vec![SshCommand {
                command: "show version".into(),
                interval: "60s".into(),
            }],
            platform: None,
            mode: SshMode::Shell,
            prompt: None,
            legacy_algorithms: false,
            aaa_group: None,
            private_key_secret: None,
        }
    }

    #[test]
    fn a_default_spec_is_valid() {
        assert_eq!(DeviceSpec::new("10.0.0.1").validate(), Ok(()));
        assert_eq!(DeviceSpec::new("leaf1.dc1.example.net").validate(), Ok(()));
        assert_eq!(DeviceSpec::new("2001:db8::1").validate(), Ok(()));
    }

    #[test]
    fn addresses_are_literals_or_host_names_without_ports() {
        for ok in [
            "127.0.1.1",
            "::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "leaf1",
            "Leaf-1.DC1.example.net",
            "1a.example",
            "x",
        ] {
            assert_eq!(validate_address(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("", "must not be empty"),
            ("10.0.0.1:57400", "must not include a port"),
            ("leaf1:22", "must not include a port"),
            ("[::1]:57400", "must not include a port"),
            ("300.1.1.1", "not an IPv4 address"),
            ("10.0.0", "not an IPv4 address"),
            ("01.2.3.4", "not an IPv4 address"),
            ("1:2:3", "not an IPv6 address"),
            ("fe80::1%eth0", "not an IPv6 address"),
            ("leaf_1", "only letters"),
            ("-leaf", "start and end"),
            ("leaf..dc1", "empty label"),
            ("leaf.", "empty label"),
            ("leaf.123", "last label must contain a letter"),
            ("https://leaf1", "not a URL"),
        ] {
            let err = validate_address(bad).expect_err(bad);
            assert!(err.contains(reason), "{bad}: {err}");
        }
        assert!(validate_address(&format!("{}.net", "a".repeat(64))).is_err());
        assert!(validate_address(&"a.".repeat(127)).is_err());
    }

    #[test]
    fn the_address_pattern_agrees_with_the_rust_check() {
        let pattern = regex::Regex::new(ADDRESS_PATTERN).unwrap();
        for input in [
            "127.0.1.1",
            "::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "leaf1",
            "Leaf-1.DC1.example.net",
            "1a.example",
            "9-a",
            "x",
            "",
            "10.0.0.1:57400",
            "leaf1:22",
            "[::1]:57400",
            "300.1.1.1",
            "10.0.0",
            "01.2.3.4",
            "leaf_1",
            "-leaf",
            "leaf-",
            "leaf..dc1",
            "leaf.",
            "leaf.123",
            "https://leaf1",
        ] {
            assert_eq!(
                pattern.is_match(input),
                validate_address(input).is_ok(),
                "{input:?}"
            );
        }
        // Where the pattern is looser, the Rust check (run by collectors and the file loader)
        // still refuses.
        for loose in ["1:2:3", &format!("leaf.{}", "a".repeat(64))] {
            assert!(
                pattern.is_match(loose) && validate_address(loose).is_err(),
                "{loose}"
            );
        }
    }

    #[test]
    fn gnmi_problems_name_their_field() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        spec.gnmi.port = 0;
        spec.gnmi.insecure = true;
        spec.gnmi.tls = Some(TlsSpec::default());
        spec.gnmi.subscriptions = vec![
            Subscription::sample("interfaces", "10s"),
            Subscription::sample("/ok", "50ms"),
            Subscription {
                mode: SubscriptionMode::OnChange,
                suppress_redundant: true,
                heartbeat_interval: Some("25h".into()),
                ..Subscription::sample("/ok", "10s")
            },
        ];
        assert_eq!(
            fields(spec.validate()),
            [
                "gnmi.port: invalid value 0, expected 1..=65535",
                "gnmi.tls: must not be set when gnmi.insecure is true (insecure turns TLS off)",
                "gnmi.subscriptions[0].path: invalid path \"interfaces\" at byte 0: a path must start with '/'",
                "gnmi.subscriptions[1].sampleInterval: invalid interval \"50ms\": must be between 100ms and 24h",
                "gnmi.subscriptions[2].heartbeatInterval: invalid interval \"25h\": must be between 100ms and 24h",
                "gnmi.subscriptions[2].sampleInterval: applies only to mode sample",
                "gnmi.subscriptions[2].suppressRedundant: applies only to mode sample",
            ]
        );
    }

    #[test]
    fn poll_interval_needs_mode_poll_or_once_and_a_valid_interval() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        spec.gnmi.poll_interval = Some("10s".into());
        assert_eq!(
            fields(spec.validate()),
            ["gnmi.pollInterval: applies only to mode poll or once"]
        );
        spec.gnmi.mode = crate::SubscribeMode::Poll;
        assert!(spec.validate().is_ok());
        spec.gnmi.poll_interval = Some("50ms".into());
        assert_eq!(
            fields(spec.validate()),
            ["gnmi.pollInterval: invalid interval \"50ms\": must be between 100ms and 24h"]
        );
    }

    #[test]
    fn subscriptions_may_be_empty_only_when_gnmi_is_off() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        spec.gnmi.subscriptions.clear();
        assert_eq!(
            fields(spec.validate()),
            ["gnmi.subscriptions: at least one subscription is required while gnmi is enabled"]
        );
        spec.gnmi.enabled = false;
        assert_eq!(
            fields(spec.validate()),
            ["gnmi.enabled: nothing to collect: keep gnmi enabled or add an ssh block"]
        );
        spec.ssh = Some(ssh());
        assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn ssh_problems_name_their_field() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        let mut bad = ssh();
        bad.trust_on_first_use = false;
        bad.host_key = Some("AAAAC3NzaC1lZDI1NTE5".into());
        bad.commands.push(SshCommand {
            command: " ".into(),
            interval: "1d".into(),
        });
        spec.ssh = Some(bad);
        assert_eq!(
            fields(spec.validate()),
            [
                "ssh.hostKey: expected an OpenSSH public key line: \"ssh-ed25519 AAAAC3Nza...\"",
                "ssh.commands[1].command: must not be empty",
                "ssh.commands[1].interval: invalid interval \"1d\": use ms, s, m or h units (at most \"24h\")",
            ]
        );
        let mut no_trust = ssh();
        no_trust.trust_on_first_use = false;
        no_trust.commands.clear();
        spec.ssh = Some(no_trust);
        assert_eq!(
            fields(spec.validate()),
            [
                "ssh: needs a way to verify the host key: set hostKey, knownHostsSecret or trustOnFirstUse: true",
                "ssh.commands: at least one command is required",
            ]
        );
        let mut pinned = ssh();
        pinned.trust_on_first_use = false;
        pinned.host_key =
            Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl leaf1".into());
        spec.ssh = Some(pinned);
        assert_eq!(spec.validate(), Ok(()));
        let mut shell = ssh();
        shell.prompt = Some("^leaf[0-9+#$".into());
        shell.aaa_group = Some("tacacs east".into());
        spec.ssh = Some(shell);
        let problems = fields(spec.validate());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("ssh.prompt: is not a valid regular expression"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("ssh.aaaGroup: "), "{problems:?}");
    }

    #[test]
    fn secret_references_and_weight_are_checked() {
        let mut spec = DeviceSpec::new("10.0.0.1");
        spec.pool = Some("Pool_A".into());
        spec.credentials = Some(SecretRef {
            name: "leaf-creds".into(),
            username_key: Some("user name".into()),
            password_key: None,
        });
        spec.weight = Some(0);
        let errors = fields(spec.validate());
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("pool: invalid name \"Pool_A\""));
        assert!(errors[1].starts_with("credentials.usernameKey: invalid Secret key"));
        assert_eq!(errors[2], "weight: invalid value 0, expected 1..=10000");
    }

    #[test]
    fn pool_problems_name_their_field() {
        let mut spec: CollectorPoolSpec = serde_json::from_value(serde_json::json!({
            "image": "netpulse:0.1.0",
            "redis": {"urlSecret": {"name": "redis"}},
            "database": {"urlSecret": {"name": "db", "key": "DATABASE_URL"}},
        }))
        .unwrap();
        assert_eq!(spec.validate(), Ok(()));
        spec.collectors.min_replicas = 5;
        spec.collectors.max_replicas = 2;
        spec.collectors.replicas = Some(7);
        spec.web.replicas = Some(2);
        spec.web.autoscaling = Some(crate::pool::WebAutoscaling {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_utilization_percentage: 0,
        });
        spec.placement.max_load_factor = crate::pool::LoadFactor(1.0);
        spec.retention.one_minute = "1d".into();
        spec.retention.one_hour = "1w".into();
        assert_eq!(
            fields(spec.validate()),
            [
                "collectors.minReplicas: must not exceed collectors.maxReplicas",
                "collectors.replicas: invalid value 7, expected 5..=2",
                "web.autoscaling: web.replicas and web.autoscaling are mutually exclusive",
                "web.autoscaling.targetCPUUtilizationPercentage: expected 1..=100",
                "placement.maxLoadFactor: invalid value 1, must be greater than 1 and at most 10",
                "retention.oneMinute: must be at least as long as retention.raw",
                "retention.oneHour: invalid duration \"1w\": unknown unit; use ms, s, m, h or d",
            ]
        );
    }
}
