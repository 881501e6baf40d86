//! CLI commands and their output, as pure functions of a [`View`]: what a device looks like
//! at one instant. No IO and no clock; the server builds the view and sends the text.
//!
//! Output lines end in `\n`; the server turns them into `\r\n` on a PTY.

use std::fmt::Write as _;
use std::time::Duration;

use crate::device::{Device, Leaf, device_name};
use crate::fabric::Fabric;

use super::Platform;

/// Window of the "5 minute" input and output rates.
const RATE_WINDOW: Duration = Duration::from_secs(300);
/// Speed of every interface, kbit/s (10G: above the traffic model's highest rate).
const BANDWIDTH_KBIT: u64 = 10_000_000;
/// LLDP hold time both platforms report.
const LLDP_TTL: u32 = 120;
/// Arista's OUI, first three bytes of EOS MACs.
const ARISTA_OUI: [u8; 3] = [0x00, 0x1c, 0x73];
/// A Cisco OUI, first three bytes of IOS MACs.
const CISCO_OUI: [u8; 3] = [0x00, 0x1b, 0x54];
/// Mixes the fleet seed into a device's identity (serial, uptime).
const IDENTITY_SALT: u64 = 0x4944_454e_5449_5459;
/// Memory reported when the device serves no memory leaves: 8 GiB, a quarter used.
const DEFAULT_MEMORY: (u64, u64) = (8 << 30, 2 << 30);
/// What `enable` asks when the device has an enable password (typed without echo).
pub(crate) const ENABLE_PASSWORD_PROMPT: &str = "Password: ";
/// What a wrong enable password gets (IOS and EOS), before the user-mode prompt again.
pub(crate) const ENABLE_DENIED: &str = "% Access denied";

/// A line of input, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Nothing but blanks.
    Empty,
    /// `show version`.
    ShowVersion,
    /// `show interfaces`.
    ShowInterfaces,
    /// `show lldp neighbors`.
    ShowLldpNeighbors,
    /// `show running-config`; needs privileged mode.
    ShowRunningConfig,
    /// `terminal length N`; 0 turns paging off.
    TerminalLength(u32),
    /// `enable`: privileged mode.
    Enable,
    /// `disable`: back to user mode.
    Disable,
    /// `exit`, `quit` or `logout`.
    Exit,
    /// The words so far are a command's beginning, but it needs more.
    Incomplete,
    /// Not a command; the offending word starts at this column of the line.
    Invalid(usize),
}

/// Command words, each word matched by any prefix of it (as both CLIs do).
const GRAMMAR: [(&[&str], Command); 10] = [
    (&["show", "version"], Command::ShowVersion),
    (&["show", "interfaces"], Command::ShowInterfaces),
    (&["show", "lldp", "neighbors"], Command::ShowLldpNeighbors),
    (&["show", "running-config"], Command::ShowRunningConfig),
    (&["terminal", "length"], Command::TerminalLength(0)),
    (&["enable"], Command::Enable),
    (&["disable"], Command::Disable),
    (&["exit"], Command::Exit),
    (&["quit"], Command::Exit),
    (&["logout"], Command::Exit),
];

impl Command {
    /// Parses one line of input.
    pub(crate) fn parse(line: &str) -> Command {
        let words: Vec<(usize, &str)> = line
            .split(' ')
            .scan(0usize, |at, w| {
                let start = *at;
                *at += w.len() + 1;
                Some((start, w))
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Command::Empty;
        }
        // The column of the first word no command accepts at its place.
        let mut furthest = 0;
        let mut incomplete = false;
        for (spec, command) in GRAMMAR {
            let matched = words
                .iter()
                .zip(spec)
                .take_while(|((_, w), s)| s.starts_with(&w.to_ascii_lowercase()))
                .count();
            if matched == spec.len() {
                let rest = &words[matched..];
                match (command, rest) {
                    (Command::TerminalLength(_), [(at, n)]) => {
                        return match n.parse() {
                            Ok(n) => Command::TerminalLength(n),
                            Err(_) => Command::Invalid(*at),
                        };
                    }
                    (Command::TerminalLength(_), []) => incomplete = true,
                    (_, []) => return command,
                    _ => {}
                }
            } else if matched == words.len() {
                incomplete = true;
            }
            furthest = furthest.max(matched);
        }
        match words.get(furthest) {
            Some((at, _)) => Command::Invalid(*at),
            None if incomplete => Command::Incomplete,
            None => Command::Invalid(0),
        }
    }
}

/// One interface at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceView {
    pub name: String,
    pub up: bool,
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_errors: u64,
    pub out_errors: u64,
    /// Rates over the last [`RATE_WINDOW`]: (bits/s, packets/s).
    pub in_rate: (u64, u64),
    pub out_rate: (u64, u64),
    pub description: String,
    pub mac: [u8; 6],
    /// (system name, port id) of the LLDP neighbour.
    pub neighbor: Option<(String, String)>,
}

/// A device at one instant: everything a command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub platform: Platform,
    pub hostname: String,
    pub serial: String,
    pub system_mac: [u8; 6],
    pub uptime: Duration,
    /// Physical and used memory, bytes.
    pub memory: (u64, u64),
    pub interfaces: Vec<InterfaceView>,
    /// How many configuration changes happened since the fleet started.
    pub config_revision: u64,
}

impl View {
    /// Device `index` of the fleet (seeded `seed`) `t` after the fleet started, with its
    /// description changes every `change_every`.
    pub(crate) fn of(
        device: &Device,
        index: usize,
        fabric: Fabric,
        seed: u64,
        platform: Platform,
        change_every: Option<Duration>,
        t: Duration,
    ) -> View {
        let mut rng =
            fastrand::Rng::with_seed(seed ^ IDENTITY_SALT ^ (index as u64).wrapping_mul(0x9e37));
        let serial = match platform {
            Platform::AristaEos => format!("JPE{:08}", rng.u32(..100_000_000)),
            Platform::CiscoIos => format!(
                "FDO{:04}{}{:03X}",
                rng.u32(1000..10_000),
                char::from(rng.u8(b'A'..=b'Z')),
                rng.u32(..0x1000)
            ),
        };
        let booted_before_start = Duration::from_secs(rng.u64(3_600..400 * 86_400));
        let oui = match platform {
            Platform::AristaEos => ARISTA_OUI,
            Platform::CiscoIos => CISCO_OUI,
        };
        let [_, a, b, c] = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
        // Interface MACs follow the system MAC: leave room for 256 of them per device.
        let system_mac = [oui[0], oui[1], oui[2], a.wrapping_add(b), c, 0];
        let revision = change_every
            .filter(|p| !p.is_zero())
            .map_or(0, |p| (t.as_nanos() / p.as_nanos()) as u64);
        let interfaces = (0..device.interface_count())
            .map(|i| {
                let raw = device.raw_values(i, t);
                let start = t.saturating_sub(RATE_WINDOW);
                let earlier = device.raw_values(i, start);
                let span = (t - start).as_secs_f64();
                let rate = |now: u64, then: u64, factor: f64| {
                    if span > 0.0 {
                        (now.saturating_sub(then) as f64 * factor / span).round() as u64
                    } else {
                        0
                    }
                };
                let at = |leaf: Leaf| raw[leaf as usize];
                let before = |leaf: Leaf| earlier[leaf as usize];
                let neighbor = fabric
                    .neighbor(index, i)
                    .map(|(d, p)| (device_name(d), Device::interface_name(p)));
                let mut mac = system_mac;
                mac[5] = u8::try_from(i + 1).unwrap_or(u8::MAX);
                InterfaceView {
                    name: Device::interface_name(i),
                    up: device.is_up(i, t),
                    in_octets: at(Leaf::InOctets),
                    out_octets: at(Leaf::OutOctets),
                    in_pkts: at(Leaf::InPkts),
                    out_pkts: at(Leaf::OutPkts),
                    in_errors: at(Leaf::InErrors),
                    out_errors: at(Leaf::OutErrors),
                    in_rate: (
                        rate(at(Leaf::InOctets), before(Leaf::InOctets), 8.0),
                        rate(at(Leaf::InPkts), before(Leaf::InPkts), 1.0),
                    ),
                    out_rate: (
                        rate(at(Leaf::OutOctets), before(Leaf::OutOctets), 8.0),
                        rate(at(Leaf::OutPkts), before(Leaf::OutPkts), 1.0),
                    ),
                    description: description(i, &neighbor, revision, device.interface_count()),
                    mac,
                    neighbor,
                }
            })
            .collect();
        View {
            platform,
            hostname: device.name.clone(),
            serial,
            system_mac,
            uptime: booted_before_start + t,
            memory: device.memory(t).unwrap_or(DEFAULT_MEMORY),
            interfaces,
            config_revision: revision,
        }
    }

    /// The output of `command`, or `None` for commands that print nothing of their own
    /// (mode changes, `terminal length`, exit, blanks). `column` shifts the IOS error
    /// marker: the length of the prompt the command was typed after.
    pub(crate) fn render(&self, command: Command, column: usize) -> Option<String> {
        let eos = self.platform == Platform::AristaEos;
        Some(match command {
            Command::ShowVersion if eos => self.eos_version(),
            Command::ShowVersion => self.ios_version(),
            Command::ShowInterfaces if eos => self.eos_interfaces(),
            Command::ShowInterfaces => self.ios_interfaces(),
            Command::ShowLldpNeighbors if eos => self.eos_lldp(),
            Command::ShowLldpNeighbors => self.ios_lldp(),
            Command::ShowRunningConfig if eos => self.eos_running_config(),
            Command::ShowRunningConfig => self.ios_running_config(),
            Command::Invalid(at) if !eos => format!(
                "{}^\n% Invalid input detected at '^' marker.\n\n",
                " ".repeat(column + at)
            ),
            Command::Invalid(_) => "% Invalid input\n".to_owned(),
            Command::Incomplete if eos => "% Incomplete command\n".to_owned(),
            Command::Incomplete => "% Incomplete command.\n\n".to_owned(),
            Command::Empty
            | Command::TerminalLength(_)
            | Command::Enable
            | Command::Disable
            | Command::Exit => return None,
        })
    }

    /// What a user-mode session gets for a privileged command.
    pub(crate) fn privileged_only(&self, column: usize) -> String {
        match self.platform {
            Platform::AristaEos => "% Invalid input (privileged mode required)\n".to_owned(),
            Platform::CiscoIos => self.render(Command::Invalid(5), column).unwrap_or_default(),
        }
    }

    fn eos_version(&self) -> String {
        let (physical, used) = self.memory;
        let mac = dotted_mac(self.system_mac);
        format!(
            "Arista DCS-7050SX3-48YC8\n\
             Hardware version:    11.01\n\
             Serial number:       {serial}\n\
             Hardware MAC address:  {mac}\n\
             System MAC address:  {mac}\n\
             \n\
             Software image version: 4.28.3M\n\
             Architecture:           x86_64\n\
             Internal build version: 4.28.3M-28837868.4283M\n\
             Internal build ID:      5b4a5e2c-1c5f-4b0e-9d1a-3f6c2e7a8b90\n\
             Image format version:   3.0\n\
             Image optimization:     Strata-4GB\n\
             \n\
             Uptime:                 {uptime}\n\
             Total memory:           {total} kB\n\
             Free memory:            {free} kB\n\
             \n",
            serial = self.serial,
            uptime = eos_uptime(self.uptime),
            total = physical / 1024,
            free = physical.saturating_sub(used) / 1024,
        )
    }

    fn ios_version(&self) -> String {
        let ports = self.interfaces.len();
        format!(
            "Cisco IOS Software, C3750E Software (C3750E-UNIVERSALK9-M), Version 15.2(4)E10, RELEASE SOFTWARE (fc2)\n\
             Technical Support: http://www.cisco.com/techsupport\n\
             Copyright (c) 1986-2020 by Cisco Systems, Inc.\n\
             Compiled Tue 31-Mar-20 03:57 by prod_rel_team\n\
             \n\
             ROM: Bootstrap program is C3750E boot loader\n\
             BOOTLDR: C3750E Boot Loader (C3750X-HBOOT-M) Version 12.2(58r)SE, RELEASE SOFTWARE (fc1)\n\
             \n\
             {host} uptime is {uptime}\n\
             System returned to ROM by power-on\n\
             System image file is \"flash:/c3750e-universalk9-mz.152-4.E10.bin\"\n\
             \n\
             \n\
             License Level: ipservices\n\
             License Type: Permanent\n\
             Next reload license Level: ipservices\n\
             \n\
             cisco WS-C3750X-48P (PowerPC405) processor (revision W0) with 262144K bytes of memory.\n\
             Processor board ID {serial}\n\
             Last reset from power-on\n\
             1 Virtual Ethernet interface\n\
             {ports} Ten Gigabit Ethernet interfaces\n\
             The password-recovery mechanism is enabled.\n\
             \n\
             512K bytes of flash-simulated non-volatile configuration memory.\n\
             Base ethernet MAC Address       : {mac}\n\
             Motherboard assembly number     : 73-15476-04\n\
             Model revision number           : W0\n\
             Model number                    : WS-C3750X-48P-S\n\
             System serial number            : {serial}\n\
             \n\
             \n\
             Switch Ports Model                     SW Version            SW Image\n\
             ------ ----- -----                     ----------            ----------\n\
             *    1 {ports:<5} WS-C3750X-48P             15.2(4)E10            C3750E-UNIVERSALK9-M\n\
             \n\
             \n\
             Configuration register is 0xF\n\
             \n",
            host = self.hostname,
            uptime = ios_uptime(self.uptime),
            serial = self.serial,
            mac = colon_mac(self.system_mac),
        )
    }

    fn eos_interfaces(&self) -> String {
        let mut out = String::new();
        for i in &self.interfaces {
            let (state, detail) = line_state(i.up);
            let mac = dotted_mac(i.mac);
            let _ = write!(
                out,
                "{name} is {state}, line protocol is {detail}\n  \
                 Hardware is Ethernet, address is {mac} (bia {mac})\n  \
                 Description: {description}\n  \
                 Ethernet MTU 9214 bytes, BW {BANDWIDTH_KBIT} kbit\n  \
                 Full-duplex, 10Gb/s, auto negotiation: off, uplink: off, flow control: off\n",
                name = i.name,
                description = i.description,
            );
            if i.up {
                let _ = writeln!(out, "  Up {}", eos_duration(self.uptime));
            }
            let _ = write!(
                out,
                "  Loopback Mode : None\n  \
                 {changes} link status changes since last clear\n  \
                 Last clearing of \"show interface\" counters never\n  \
                 5 minutes input rate {in_rate} ({in_load:.1}% with framing overhead), {in_pps} packets/sec\n  \
                 5 minutes output rate {out_rate} ({out_load:.1}% with framing overhead), {out_pps} packets/sec\n     \
                 {in_pkts} packets input, {in_octets} bytes\n     \
                 Received 0 broadcasts, {in_mcast} multicast\n     \
                 0 runts, 0 giants\n     \
                 {in_errors} input errors, {in_errors} CRC, 0 alignment, 0 symbol, 0 input discards\n     \
                 0 PAUSE input\n     \
                 {out_pkts} packets output, {out_octets} bytes\n     \
                 Sent 0 broadcasts, {out_mcast} multicast\n     \
                 {out_errors} output errors, 0 collisions\n     \
                 0 late collision, 0 deferred, 0 output discards\n     \
                 0 PAUSE output\n",
                changes = if i.up { 1 } else { 2 },
                in_rate = eos_rate(i.in_rate.0),
                in_load = percent(i.in_rate),
                out_load = percent(i.out_rate),
                in_pps = i.in_rate.1,
                out_rate = eos_rate(i.out_rate.0),
                out_pps = i.out_rate.1,
                in_pkts = i.in_pkts,
                in_octets = i.in_octets,
                in_mcast = i.in_pkts / 1000,
                in_errors = i.in_errors,
                out_pkts = i.out_pkts,
                out_octets = i.out_octets,
                out_mcast = i.out_pkts / 1000,
                out_errors = i.out_errors,
            );
        }
        out
    }

    fn ios_interfaces(&self) -> String {
        let mut out = String::new();
        for i in &self.interfaces {
            let (state, detail) = line_state(i.up);
            let mac = dotted_mac(i.mac);
            let load = |bps: u64| (bps * 255 / (BANDWIDTH_KBIT * 1000)).clamp(1, 255);
            let _ = write!(
                out,
                "{name} is {state}, line protocol is {detail}\n  \
                 Hardware is Ten Gigabit Ethernet, address is {mac} (bia {mac})\n  \
                 Description: {description}\n  \
                 MTU 1500 bytes, BW {BANDWIDTH_KBIT} Kbit/sec, DLY 10 usec,\n     \
                 reliability 255/255, txload {txload}/255, rxload {rxload}/255\n  \
                 Encapsulation ARPA, loopback not set\n  \
                 Keepalive not set\n  \
                 Full-duplex, 10Gb/s, link type is auto, media type is 10GBase-SR\n  \
                 input flow-control is off, output flow-control is unsupported\n  \
                 ARP type: ARPA, ARP Timeout 04:00:00\n  \
                 Last input 00:00:00, output 00:00:00, output hang never\n  \
                 Last clearing of \"show interface\" counters never\n  \
                 Input queue: 0/75/0/0 (size/max/drops/flushes); Total output drops: 0\n  \
                 Queueing strategy: fifo\n  \
                 Output queue: 0/40 (size/max)\n  \
                 5 minute input rate {in_bps} bits/sec, {in_pps} packets/sec\n  \
                 5 minute output rate {out_bps} bits/sec, {out_pps} packets/sec\n     \
                 {in_pkts} packets input, {in_octets} bytes, 0 no buffer\n     \
                 Received 0 broadcasts ({in_mcast} multicasts)\n     \
                 0 runts, 0 giants, 0 throttles\n     \
                 {in_errors} input errors, {in_errors} CRC, 0 frame, 0 overrun, 0 ignored\n     \
                 0 watchdog, {in_mcast} multicast, 0 pause input\n     \
                 0 input packets with dribble condition detected\n     \
                 {out_pkts} packets output, {out_octets} bytes, 0 underruns\n     \
                 {out_errors} output errors, 0 collisions, {resets} interface resets\n     \
                 0 unknown protocol drops\n     \
                 0 babbles, 0 late collision, 0 deferred\n     \
                 0 lost carrier, 0 no carrier, 0 pause output\n     \
                 0 output buffer failures, 0 output buffers swapped out\n",
                name = i.name,
                description = i.description,
                txload = load(i.out_rate.0),
                rxload = load(i.in_rate.0),
                in_bps = i.in_rate.0,
                in_pps = i.in_rate.1,
                out_bps = i.out_rate.0,
                out_pps = i.out_rate.1,
                in_pkts = i.in_pkts,
                in_octets = i.in_octets,
                in_mcast = i.in_pkts / 1000,
                in_errors = i.in_errors,
                out_pkts = i.out_pkts,
                out_octets = i.out_octets,
                out_errors = i.out_errors,
                resets = if i.up { 1 } else { 2 },
            );
        }
        out
    }

    fn neighbors(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.interfaces.iter().filter_map(|i| {
            i.neighbor
                .as_ref()
                .map(|(name, port)| (i.name.as_str(), name.as_str(), port.as_str()))
        })
    }

    fn eos_lldp(&self) -> String {
        let count = self.neighbors().count();
        let mut out = format!(
            "Last table change time   : {ago} ago\n\
             Number of table inserts  : {count}\n\
             Number of table deletes  : 0\n\
             Number of table drops    : 0\n\
             Number of table age-outs : 0\n\
             \n\
             Port          Neighbor Device ID       Neighbor Port ID    TTL\n\
             ---------- ------------------------ ---------------------- ---\n",
            ago = eos_clock(self.uptime),
        );
        for (local, name, port) in self.neighbors() {
            let _ = writeln!(out, "{local:<13} {name:<24} {port:<19} {LLDP_TTL}");
        }
        out.push('\n');
        out
    }

    fn ios_lldp(&self) -> String {
        let mut out = "Capability codes:\n    \
                       (R) Router, (B) Bridge, (T) Telephone, (C) DOCSIS Cable Device\n    \
                       (W) WLAN Access Point, (P) Repeater, (S) Station, (O) Other\n\
                       \n\
                       Device ID           Local Intf     Hold-time  Capability      Port ID\n"
            .to_owned();
        let mut count = 0;
        for (local, name, port) in self.neighbors() {
            let _ = writeln!(
                out,
                "{name:<20}{local:<15}{LLDP_TTL:<11}{:<16}{port}",
                "B,R"
            );
            count += 1;
        }
        let _ = write!(out, "\nTotal entries displayed: {count}\n\n");
        out
    }

    fn eos_running_config(&self) -> String {
        let mut out = format!(
            "! Command: show running-config\n\
             ! device: {host} (DCS-7050SX3-48YC8, EOS-4.28.3M)\n\
             !\n\
             ! boot system flash:/EOS-4.28.3M.swi\n\
             !\n\
             no aaa root\n\
             !\n\
             username admin privilege 15 role network-admin secret sha512 $6$netpulse$simulated\n\
             !\n\
             transceiver qsfp default-mode 4x10G\n\
             !\n\
             service routing protocols model multi-agent\n\
             !\n\
             hostname {host}\n\
             !\n\
             spanning-tree mode mstp\n\
             !\n\
             management ssh\n   \
             idle-timeout 60\n\
             !\n",
            host = self.hostname,
        );
        for i in &self.interfaces {
            let _ = write!(
                out,
                "interface {}\n   description {}\n   mtu 9214\n   no switchport\n!\n",
                i.name, i.description
            );
        }
        out.push_str("ip routing\n!\nlldp run\n!\nend\n");
        out
    }

    fn ios_running_config(&self) -> String {
        let mut body = format!(
            "\n!\n\
             version 15.2\n\
             no service pad\n\
             service timestamps debug datetime msec\n\
             service timestamps log datetime msec\n\
             no service password-encryption\n\
             !\n\
             hostname {host}\n\
             !\n\
             boot-start-marker\n\
             boot-end-marker\n\
             !\n\
             username admin privilege 15 secret 5 $1$netpulse$simulated\n\
             no aaa new-model\n\
             switch 1 provision ws-c3750x-48p\n\
             system mtu routing 1500\n\
             ip routing\n\
             !\n\
             spanning-tree mode rapid-pvst\n\
             spanning-tree extend system-id\n\
             !\n\
             lldp run\n\
             !\n",
            host = self.hostname,
        );
        for i in &self.interfaces {
            let _ = write!(
                body,
                "interface {}\n description {}\n no switchport\n no ip address\n!\n",
                i.name, i.description
            );
        }
        body.push_str(
            "ip ssh version 2\n\
             !\n\
             line con 0\n\
             line vty 0 4\n \
             login local\n \
             transport input ssh\n\
             line vty 5 15\n \
             login local\n \
             transport input ssh\n\
             !\n\
             end\n",
        );
        format!(
            "Building configuration...\n\nCurrent configuration : {} bytes\n{body}\n",
            body.len()
        )
    }
}

/// The description of interface `iface`: its neighbour if any; the interface whose turn
/// it is in revision `revision` carries a change ticket.
fn description(
    iface: usize,
    neighbor: &Option<(String, String)>,
    revision: u64,
    interfaces: usize,
) -> String {
    let mut text = match neighbor {
        Some((name, port)) => format!("to {name} {port}"),
        None => "unused".to_owned(),
    };
    if revision > 0 && interfaces > 0 && (revision - 1) % interfaces as u64 == iface as u64 {
        let _ = write!(text, " (CHG{revision:05})");
    }
    text
}

/// An interface's status and line protocol words, as both platforms print them.
fn line_state(up: bool) -> (&'static str, &'static str) {
    if up {
        ("up", "up (connected)")
    } else {
        ("down", "down (notconnect)")
    }
}

fn dotted_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn colon_mac(m: [u8; 6]) -> String {
    format!(
        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Share of the bandwidth a (bits/s, packets/s) rate uses, counting 20 bytes of preamble
/// and inter-frame gap per packet as EOS does.
fn percent((bps, pps): (u64, u64)) -> f64 {
    (bps + pps * 160) as f64 * 100.0 / (BANDWIDTH_KBIT * 1000) as f64
}

/// `1 unit` or `N units`.
fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// (years, weeks, days, hours, minutes, seconds) of `d`, years of 365 days.
fn split(d: Duration) -> [u64; 6] {
    let s = d.as_secs();
    [
        s / (365 * 86_400),
        s % (365 * 86_400) / (7 * 86_400),
        s % (365 * 86_400) % (7 * 86_400) / 86_400,
        s % 86_400 / 3_600,
        s % 3_600 / 60,
        s % 60,
    ]
}

/// IOS: from the largest non-zero unit down to minutes, `1 year, 2 weeks, 3 days, ...`.
fn ios_uptime(d: Duration) -> String {
    let parts = split(d);
    let units = ["year", "week", "day", "hour", "minute"];
    let first = parts[..5].iter().position(|n| *n > 0).unwrap_or(4);
    (first..5)
        .map(|i| plural(parts[i], units[i]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// EOS `show version`: `3 weeks, 2 days, 4 hours and 12 minutes`.
fn eos_uptime(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}, {}, {} and {}",
        plural(s / (7 * 86_400), "week"),
        plural(s % (7 * 86_400) / 86_400, "day"),
        plural(s % 86_400 / 3_600, "hour"),
        plural(s % 3_600 / 60, "minute"),
    )
}

/// EOS `show interfaces` "Up ..." line: `5 days, 3 hours, 2 minutes, 1 second`.
fn eos_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}, {}, {}, {}",
        plural(s / 86_400, "day"),
        plural(s % 86_400 / 3_600, "hour"),
        plural(s % 3_600 / 60, "minute"),
        plural(s % 60, "second"),
    )
}

/// `H:MM:SS`, as EOS prints recent times.
fn eos_clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3_600, s % 3_600 / 60, s % 60)
}

/// A rate with three significant digits and a unit, as EOS prints it: `25.4 Mbps`.
fn eos_rate(bps: u64) -> String {
    let v = bps as f64;
    let (scaled, unit) = match bps {
        0..1_000 => return format!("{bps} bps"),
        1_000..1_000_000 => (v / 1e3, "kbps"),
        1_000_000..1_000_000_000 => (v / 1e6, "Mbps"),
        _ => (v / 1e9, "Gbps"),
    };
    let decimals = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.decimals$} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed device and instant the recorded samples come from.
    pub(crate) fn sample(platform: Platform) -> View {
        let fabric = Fabric::new(12, 2, 4);
        let index = match platform {
            Platform::AristaEos => 0,
            Platform::CiscoIos => 2,
        };
        let device = Device::new(device_name(index), index, 4, 7, fabric, true);
        let t = Duration::from_secs(3_725);
        View::of(
            &device,
            index,
            fabric,
            7,
            platform,
            Some(Duration::from_secs(900)),
            t,
        )
    }

    #[test]
    fn commands_take_prefixes_and_name_the_bad_word() {
        let table = [
            ("show version", Command::ShowVersion),
            ("  sh   ver ", Command::ShowVersion),
            ("SHOW INT", Command::ShowInterfaces),
            ("show interface", Command::ShowInterfaces),
            ("sh lldp nei", Command::ShowLldpNeighbors),
            ("show run", Command::ShowRunningConfig),
            ("terminal length 0", Command::TerminalLength(0)),
            ("term len 40", Command::TerminalLength(40)),
            ("term len x", Command::Invalid(9)),
            ("term len", Command::Incomplete),
            ("show", Command::Incomplete),
            ("en", Command::Enable),
            ("exit", Command::Exit),
            ("quit", Command::Exit),
            ("", Command::Empty),
            ("show bogus", Command::Invalid(5)),
            ("show version extra", Command::Invalid(13)),
            ("frobnicate", Command::Invalid(0)),
        ];
        for (line, want) in table {
            assert_eq!(Command::parse(line), want, "{line:?}");
        }
    }

    #[test]
    fn ios_error_marks_the_bad_word_after_the_prompt() {
        let view = sample(Platform::CiscoIos);
        let out = view.render(Command::parse("show bogus"), 9).unwrap();
        assert_eq!(
            out,
            format!(
                "{}^\n% Invalid input detected at '^' marker.\n\n",
                " ".repeat(14)
            )
        );
        let eos = sample(Platform::AristaEos);
        assert_eq!(
            eos.render(Command::Invalid(3), 9).unwrap(),
            "% Invalid input\n"
        );
    }

    #[test]
    fn uptimes_read_like_the_vendors() {
        let d = Duration::from_secs(400 * 86_400 + 3 * 3_600 + 61);
        assert_eq!(ios_uptime(d), "1 year, 5 weeks, 0 days, 3 hours, 1 minute");
        assert_eq!(ios_uptime(Duration::from_secs(59)), "0 minutes");
        assert_eq!(eos_uptime(d), "57 weeks, 1 day, 3 hours and 1 minute");
        assert_eq!(eos_rate(25_432_100), "25.4 Mbps");
        assert_eq!(eos_rate(999), "999 bps");
        assert_eq!(eos_rate(1_234_000_000), "1.23 Gbps");
    }

    #[test]
    fn descriptions_change_once_per_period_one_interface_at_a_time() {
        let n = None;
        assert_eq!(description(0, &n, 0, 4), "unused");
        assert_eq!(description(0, &n, 1, 4), "unused (CHG00001)");
        assert_eq!(description(1, &n, 1, 4), "unused");
        assert_eq!(description(1, &n, 6, 4), "unused (CHG00006)");
    }

    #[test]
    fn views_carry_the_gnmi_counters_and_fabric_neighbours() {
        let fabric = Fabric::new(12, 2, 4);
        let device = Device::new(device_name(2), 2, 4, 7, fabric, true);
        let t = Duration::from_secs(100);
        let view = View::of(&device, 2, fabric, 7, Platform::CiscoIos, None, t);
        for (i, iface) in view.interfaces.iter().enumerate() {
            let raw = device.raw_values(i, t);
            assert_eq!(iface.in_octets, raw[Leaf::InOctets as usize]);
            assert_eq!(iface.out_pkts, raw[Leaf::OutPkts as usize]);
        }
        assert_eq!(
            view.interfaces[0].neighbor,
            Some(("sim-0001".to_owned(), "Ethernet1".to_owned()))
        );
        assert_eq!(view.interfaces[3].neighbor, None);
        assert_eq!(view.config_revision, 0);
    }

    /// `tests/data/cli/<platform>/<command>.txt` hold these renderings; set
    /// `UPDATE_CLI_SAMPLES=1` to rewrite them after a deliberate change.
    #[test]
    fn recorded_samples_match_the_renderers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cli");
        let update = std::env::var_os("UPDATE_CLI_SAMPLES").is_some();
        let commands = [
            ("show_version", Command::ShowVersion),
            ("show_interfaces", Command::ShowInterfaces),
            ("show_lldp_neighbors", Command::ShowLldpNeighbors),
            ("show_running_config", Command::ShowRunningConfig),
        ];
        for platform in [Platform::AristaEos, Platform::CiscoIos] {
            let view = sample(platform);
            for (file, command) in commands {
                let path = dir.join(platform.as_str()).join(format!("{file}.txt"));
                let text = view.render(command, 0).unwrap();
                if update {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &text).unwrap();
                }
                let recorded = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    recorded,
                    text,
                    "{} drifted from the renderer; rerun with UPDATE_CLI_SAMPLES=1 if intended",
                    path.display()
                );
            }
        }
    }
}
