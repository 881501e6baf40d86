//! Screen-scraping helpers for the interactive shell: cleaning terminal output, and
//! recognising the prompt and the pager. Pure functions, unit-tested beside the code.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use regex::Regex;

use crate::Platform;

/// The default prompt of a platform, matched against the last line of output: a
/// hostname, an optional mode in parentheses (`(config)`, `(config-if-Et1)`), then `>`
/// or `#`. The `host` group lets the session pin the hostname once it has seen it.
pub fn default_prompt(platform: Platform) -> &'static str {
    match platform {
        Platform::AristaEos | Platform::CiscoIos => {
            r"(?P<host>[A-Za-z0-9][A-Za-z0-9_.\-/:@]{0,62})(?:\([A-Za-z0-9_.\-/:]*\))?[>#]"
        }
    }
}

/// The commands that turn paging off on a platform.
pub fn default_paging_off(platform: Platform) -> Vec<String> {
    match platform {
        Platform::AristaEos | Platform::CiscoIos => vec!["terminal length 0".to_owned()],
    }
}

/// The default pager prompt: `--More--`, ` --More-- `, `-- More --`, `<--- More --->`.
pub const DEFAULT_PAGER: &str = r"(?i)-+\s*more\s*-+>?";

/// The password prompt `enable` answers with when an enable secret is set: `Password:`
/// (IOS, EOS), `Enable password:`, `Enable secret:`; matched against the whole last line.
pub const ENABLE_PASSWORD_PROMPT: &str = r"(?i)\s*(?:enable\s+)?(?:password|secret):\s*";

/// Most patterns [`shared`] keeps (the platforms' defaults and the prompts Devices
/// override; beyond this, patterns are compiled per session).
const MAX_SHARED: usize = 256;

/// Patterns compiled once per process, by source.
static SHARED: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(Mutex::default);

/// `pattern` compiled once per process and shared by every session: one program and one
/// pool of search caches (as many as threads search at once), not one per session.
/// (Compiling the default prompt per session, with a Unicode `\w` repeated 62 times,
/// cost 18.5 ms of CPU and 3.7 MiB per session: 9.5 GiB and a reconnect storm at 2,000
/// devices, `netpulse-bench ssh-poll`.)
pub(crate) fn shared(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(regex) = shared.get(pattern) {
        return Ok(Arc::clone(regex));
    }
    let regex = Arc::new(Regex::new(pattern)?);
    if shared.len() < MAX_SHARED {
        shared.insert(pattern.to_owned(), Arc::clone(&regex));
    }
    Ok(regex)
}

/// Compiles a prompt pattern so that it must match the whole last line (trailing
/// whitespace allowed); shared by every session ([`shared`]).
pub(crate) fn anchored(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    shared(&format!(r"^(?:{pattern})\s*$"))
}

/// A prompt: a shared pattern, pinned to the hostname seen in the first prompt when the
/// pattern has a `host` group (the platforms' defaults), so output lines that look like
/// another device's prompt do not end a command. Pinning compares the `host` group with
/// the name rather than compiling a pattern per session.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pattern: Arc<Regex>,
    host: Option<Arc<str>>,
}

impl Prompt {
    /// `pattern`, matching any host.
    pub(crate) fn new(pattern: Arc<Regex>) -> Self {
        Self {
            pattern,
            host: None,
        }
    }

    /// This prompt pinned to the host named in `line`, if `line` is a prompt with a
    /// `host` group.
    pub(crate) fn pinned_by(&self, line: &str) -> Option<Self> {
        let host = self.pattern.captures(line)?.name("host")?.as_str().into();
        Some(Self {
            pattern: Arc::clone(&self.pattern),
            host: Some(host),
        })
    }

    /// Whether `line` is this prompt.
    pub(crate) fn is_match(&self, line: &str) -> bool {
        match &self.host {
            None => self.pattern.is_match(line),
            Some(host) => self
                .pattern
                .captures(line)
                .and_then(|c| c.name("host"))
                .is_some_and(|h| h.as_str() == &**host),
        }
    }
}

/// The last line of a raw buffer (after its last `\n`), cleaned.
pub(crate) fn last_line(raw: &[u8]) -> String {
    let start = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    clean(&String::from_utf8_lossy(&raw[start..]))
}

/// Turns terminal output into plain text: drops ANSI escape sequences, applies
/// backspaces, normalises CRLF to LF, and lets a bare `\r` return to the start of the
/// line (pagers erase `--More--` by overwriting it).
pub fn clean(raw: &str) -> String {
    let mut lines = Vec::new();
    for line in raw.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut current: Vec<char> = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => skip_escape(&mut chars),
                '\x08' => {
                    current.pop();
                }
                '\r' => {
                    // A carriage return restarts the line: what follows overwrites it.
                    current.clear();
                }
                '\x07' | '\0' => {}
                c => current.push(c),
            }
        }
        lines.push(current.into_iter().collect::<String>());
    }
    lines.join("\n")
}

fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    // CSI (`ESC [`): parameters, then one final byte in `@..~`. Other two-character
    // sequences (`ESC =`, `ESC >`) are fully consumed by the `next` call.
    if chars.next() == Some('[') {
        for c in chars.by_ref() {
            if ('@'..='~').contains(&c) {
                break;
            }
        }
    }
}

/// What the device said in `cleaned` (the output of `enable` or of the secret, prompt
/// last): its last non-blank line other than the prompt and the echoed `enable`, with
/// `secret` masked should a device echo it. `None` when it said nothing.
pub(crate) fn device_message(cleaned: &str, secret: Option<&str>) -> Option<String> {
    let mut lines: Vec<&str> = cleaned.split('\n').collect();
    lines.pop();
    let said = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.ends_with("enable"))?;
    Some(match secret.filter(|s| !s.is_empty()) {
        Some(secret) => said.replace(secret, "<redacted>"),
        None => said.to_owned(),
    })
}

/// The output of one shell command: the cleaned text without the echoed command line
/// and without the trailing prompt, ending with a newline when not empty.
pub(crate) fn command_output(cleaned: &str, command: &str, prompt: &Prompt) -> String {
    let mut lines: Vec<&str> = cleaned.split('\n').collect();
    if lines.last().is_some_and(|l| prompt.is_match(l)) {
        lines.pop();
    }
    let command = command.trim();
    if !command.is_empty()
        && lines
            .first()
            .is_some_and(|l| l.trim_end().ends_with(command))
    {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn clean_table() {
        let cases = [
            ("a\r\nb\r\n", "a\nb\n"),
            ("plain", "plain"),
            (" --More-- \r          \rline 21\r\n", "line 21\n"),
            ("abc\x08\x08d", "ad"),
            ("\x1b[1mbold\x1b[0m text", "bold text"),
            ("x\x1b=y", "xy"),
            ("\r\n\r\nleaf1#", "\n\nleaf1#"),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn default_prompt_table() {
        let re = anchored(default_prompt(Platform::AristaEos)).unwrap();
        for ok in [
            "leaf1#",
            "leaf1>",
            "leaf1(config)#",
            "leaf1(config-if-Et1)#",
            "sw-01.lab# ",
            "R1#",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in [
            "",
            "# comment",
            "Ethernet1 is up",
            "leaf1# show version",
            "--More--",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
        let caps = re.captures("spine2(config)#").unwrap();
        assert_eq!(&caps["host"], "spine2");
    }

    #[test]
    fn patterns_are_compiled_once_per_process() {
        let pattern = r"^unit-test-\d+#$";
        assert!(!SHARED.lock().unwrap().contains_key(pattern));
        let first = shared(pattern).unwrap();
        assert!(SHARED.lock().unwrap().contains_key(pattern));
        assert_eq!(shared(pattern).unwrap().as_str(), first.as_str());
        assert!(shared("(unclosed").is_err());
        assert!(!SHARED.lock().unwrap().contains_key("(unclosed"));
    }

    #[test]
    fn pinned_prompt_only_matches_the_host() {
        let any = Prompt::new(anchored(default_prompt(Platform::CiscoIos)).unwrap());
        assert!(any.is_match("leaf2#"));
        assert!(any.pinned_by("show version").is_none());
        let re = any.pinned_by("leaf1>").unwrap();
        assert!(re.is_match("leaf1#"));
        assert!(re.is_match("leaf1(config)#"));
        assert!(re.is_match("leaf1> "));
        assert!(!re.is_match("leaf2#"));
        assert!(!re.is_match("leaf10#"));
        assert!(!re.is_match("xleaf1#"));
    }

    #[test]
    fn pager_pattern_table() {
        let re = Regex::new(DEFAULT_PAGER).unwrap();
        for ok in [" --More-- ", "--More--", "-- More --", "<--- More --->"] {
            assert!(re.is_match(ok), "{ok}");
        }
        assert!(!re.is_match("more or less"));
    }

    #[test]
    fn command_output_strips_echo_and_prompt() {
        let prompt = Prompt::new(anchored(default_prompt(Platform::AristaEos)).unwrap())
            .pinned_by("leaf1#")
            .unwrap();
        let got = command_output(
            "show version\nline 1\nline 2\nleaf1#",
            "show version",
            &prompt,
        );
        assert_eq!(got, "line 1\nline 2\n");
        assert_eq!(
            command_output("terminal length 0\nleaf1#", "terminal length 0", &prompt),
            ""
        );
        // Without an echo, the first line is output and is kept.
        assert_eq!(
            command_output("line 1\nleaf1#", "show x", &prompt),
            "line 1\n"
        );
    }

    #[test]
    fn enable_password_prompt_table() {
        let re = anchored(ENABLE_PASSWORD_PROMPT).unwrap();
        for ok in [
            "Password:",
            "Password: ",
            "password:",
            "Enable password: ",
            "Secret:",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in ["leaf1>", "% Bad passwords", "Password: hunter2", "enable"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn device_message_is_the_last_line_before_the_prompt_without_the_secret() {
        assert_eq!(
            device_message("\n% Access denied\n\nleaf1>", Some("s3cret")).as_deref(),
            Some("% Access denied")
        );
        assert_eq!(device_message("enable\nleaf1>", None), None);
        assert_eq!(
            device_message("s3cret\n% Bad secrets\nleaf1>", Some("s3cret")).as_deref(),
            Some("% Bad secrets")
        );
        assert_eq!(
            device_message("% wrong: s3cret\nPassword: ", Some("s3cret")).as_deref(),
            Some("% wrong: <redacted>")
        );
    }

    #[test]
    fn last_line_of_buffer() {
        assert_eq!(last_line(b"a\r\nb\r\nleaf1#"), "leaf1#");
        assert_eq!(last_line(b"leaf1#"), "leaf1#");
        assert_eq!(last_line(b"a\r\n"), "");
    }
}
