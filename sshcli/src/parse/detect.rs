//! Platform detection from `show version` output, for devices whose spec names none.

use crate::Platform;

/// Phrases only Cisco IOS and IOS-XE print in `show version` (IOS-XR prints `Cisco IOS
/// XR Software` and NX-OS `Cisco Nexus Operating System`, neither of which matches).
const CISCO_IOS_MARKERS: [&str; 4] = [
    "Cisco IOS Software",
    "Cisco IOS XE Software",
    "IOS-XE Software",
    "Cisco Internetwork Operating System Software",
];

/// Words only Arista EOS prints (`Arista DCS-7050...`, `Arista vEOS`, `cEOSLab`).
const ARISTA_EOS_WORDS: [&str; 4] = ["Arista", "EOS", "vEOS", "cEOSLab"];

/// The platform whose `show version` output `text` is, or `None` when it is neither
/// Arista EOS nor Cisco IOS/IOS-XE (or not a `show version` at all).
pub fn detect_platform(text: &str) -> Option<Platform> {
    if CISCO_IOS_MARKERS.iter().any(|m| text.contains(m)) {
        Some(Platform::CiscoIos)
    } else if ARISTA_EOS_WORDS.iter().any(|w| has_word(text, w)) {
        Some(Platform::AristaEos)
    } else {
        None
    }
}

/// Whether `word` occurs in `text` with no letter or digit on either side.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_pick_the_platform() {
        let cases = [
            (
                "Arista DCS-7050TX-64-R\nHardware version: 01.11\n",
                Some(Platform::AristaEos),
            ),
            (
                "Arista vEOS-lab\nHardware version:\n",
                Some(Platform::AristaEos),
            ),
            (
                "cEOSLab\nSoftware image version: 4.30.0F\n",
                Some(Platform::AristaEos),
            ),
            (
                "Cisco IOS Software, IOSv Software (VIOS-ADVENTERPRISEK9-M), Version 15.9(3)M4",
                Some(Platform::CiscoIos),
            ),
            (
                "Cisco IOS XE Software, Version 17.03.04a\nCisco IOS Software [Amsterdam], ...",
                Some(Platform::CiscoIos),
            ),
            ("Cisco IOS XR Software, Version 7.5.2\n", None),
            ("Cisco Nexus Operating System (NX-OS) Software\n", None),
            ("Hostname: mx1\nModel: mx204\nJunos: 21.4R3\n", None),
            ("PEOPLE and GEOS and Aristals\n", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(detect_platform(text), expected, "{text:?}");
        }
    }
}
