//! Synthetic, deterministic traffic for one interface.
//!
//! Every counter is a closed-form function of the time since the fleet started, so
//! values are cheap to compute at any instant, never go backwards, and need no per-tick
//! state. The byte rate of each direction is a base rate modulated by a slow "diurnal"
//! wave and a few faster harmonics that read as noise; every wave period divides
//! [`DIURNAL_PERIOD`], and link flaps repeat at a multiple of it, so the bytes lost to one
//! outage are the same for every outage and the count stays O(1) to compute.

use std::f64::consts::TAU;
use std::time::Duration;

/// Period of the slow swing in traffic: minutes rather than a day, so demos visibly move.
pub(crate) const DIURNAL_PERIOD: Duration = Duration::from_secs(600);
/// Lowest base rate of an interface direction, bits per second.
pub(crate) const MIN_BASE_BPS: f64 = 50e6;
/// Highest base rate of an interface direction, bits per second.
pub(crate) const MAX_BASE_BPS: f64 = 5e9;
/// Share of interfaces that flap now and then.
const FLAP_PROBABILITY: f64 = 0.1;
/// Share of interfaces that ever count errors.
const ERROR_PROBABILITY: f64 = 0.25;
/// Mixes the fleet seed with device and interface indexes.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// One sinusoidal component of the rate, relative to the base rate.
#[derive(Debug, Clone, Copy)]
struct Wave {
    amplitude: f64,
    omega: f64,
    phase: f64,
}

/// Traffic of one direction (in or out) of an interface.
#[derive(Debug, Clone)]
struct Direction {
    base_bytes_per_s: f64,
    waves: [Wave; 3],
    packet_size: f64,
    errors_per_packet: f64,
}

impl Direction {
    fn new(rng: &mut fastrand::Rng, base_bps: f64) -> Self {
        let diurnal = TAU / DIURNAL_PERIOD.as_secs_f64();
        let harmonic = |rng: &mut fastrand::Rng, n: std::ops::RangeInclusive<u32>| Wave {
            amplitude: uniform(rng, 0.03, 0.06),
            omega: diurnal * f64::from(rng.u32(n)),
            phase: uniform(rng, 0.0, TAU),
        };
        let waves = [
            Wave {
                amplitude: uniform(rng, 0.25, 0.45),
                omega: diurnal,
                phase: uniform(rng, 0.0, TAU),
            },
            harmonic(rng, 11..=19),
            harmonic(rng, 53..=89),
        ];
        let errors_per_packet = if rng.f64() < ERROR_PROBABILITY {
            log_uniform(rng, 1e-9, 1e-7)
        } else {
            0.0
        };
        Self {
            base_bytes_per_s: base_bps / 8.0,
            waves,
            packet_size: uniform(rng, 300.0, 1200.0),
            errors_per_packet,
        }
    }

    /// Bytes sent in `[0, t]` seconds if the link never went down.
    fn bytes_if_always_up(&self, t: f64) -> f64 {
        let mut x = t;
        for w in &self.waves {
            x += w.amplitude / w.omega * (w.phase.cos() - (w.omega * t + w.phase).cos());
        }
        self.base_bytes_per_s * x
    }

    /// Largest relative deviation of the instantaneous rate from the base rate.
    #[cfg(test)]
    fn swing(&self) -> f64 {
        self.waves.iter().map(|w| w.amplitude).sum()
    }
}

/// Periodic outages: down for `down` seconds every `period`, starting at `offset`.
#[derive(Debug, Clone, Copy)]
struct Flap {
    period: f64,
    offset: f64,
    down: f64,
}

impl Flap {
    /// Index of the last outage that started at or before `t`, if any.
    fn last_started(&self, t: f64) -> Option<f64> {
        (t >= self.offset).then(|| ((t - self.offset) / self.period).floor())
    }
}

/// The six OpenConfig interface counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_errors: u64,
    pub out_errors: u64,
}

/// Traffic of one interface: both directions, its outages and its age at fleet start.
#[derive(Debug, Clone)]
pub(crate) struct Traffic {
    input: Direction,
    output: Direction,
    flap: Option<Flap>,
    /// Seconds of traffic already counted when the fleet starts, so counters are not 0.
    uptime_at_start: f64,
}

impl Traffic {
    /// The traffic of interface `iface` of device `device`; the same arguments always give
    /// the same traffic.
    pub(crate) fn new(seed: u64, device: usize, iface: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(mix(seed, device as u64, iface as u64));
        let in_bps = log_uniform(&mut rng, MIN_BASE_BPS, MAX_BASE_BPS);
        let out_bps = (in_bps * uniform(&mut rng, 0.5, 1.5)).clamp(MIN_BASE_BPS, MAX_BASE_BPS);
        let input = Direction::new(&mut rng, in_bps);
        let output = Direction::new(&mut rng, out_bps);
        let flap = (rng.f64() < FLAP_PROBABILITY).then(|| {
            let period = DIURNAL_PERIOD.as_secs_f64() * f64::from(rng.u32(1..=3));
            let down = uniform(&mut rng, 20.0, 60.0);
            Flap {
                period,
                offset: uniform(&mut rng, 0.0, period - down),
                down,
            }
        });
        Self {
            input,
            output,
            flap,
            uptime_at_start: uniform(&mut rng, 3_600.0, 20.0 * 86_400.0),
        }
    }

    /// Base rates (in, out) in bits per second.
    #[cfg(test)]
    pub(crate) fn base_bps(&self) -> (f64, f64) {
        (
            self.input.base_bytes_per_s * 8.0,
            self.output.base_bytes_per_s * 8.0,
        )
    }

    /// Largest relative deviation of the rate from the base rate, per direction.
    #[cfg(test)]
    pub(crate) fn swing(&self) -> (f64, f64) {
        (self.input.swing(), self.output.swing())
    }

    /// Whether this interface ever goes down.
    #[cfg(test)]
    pub(crate) fn flaps(&self) -> bool {
        self.flap.is_some()
    }

    /// Whether the link is up `t` after fleet start.
    pub(crate) fn is_up(&self, t: Duration) -> bool {
        let t = t.as_secs_f64();
        match self.flap {
            Some(f) => match f.last_started(t) {
                Some(k) => t - (f.offset + k * f.period) >= f.down,
                None => true,
            },
            None => true,
        }
    }

    /// The first instant after `t` when the oper-status changes, or `None` if it never does.
    pub(crate) fn next_status_change(&self, t: Duration) -> Option<Duration> {
        let f = self.flap?;
        let s = t.as_secs_f64();
        let next = match f.last_started(s) {
            None => f.offset,
            Some(k) => {
                let start = f.offset + k * f.period;
                if s - start < f.down {
                    start + f.down
                } else {
                    start + f.period
                }
            }
        };
        // Never report a change at or before `t`, whatever the float rounding did.
        Some(Duration::from_secs_f64(next).max(t + Duration::from_millis(1)))
    }

    /// Counters `t` after fleet start.
    pub(crate) fn counters(&self, t: Duration) -> Counters {
        let t = t.as_secs_f64();
        let (in_octets, in_pkts, in_errors) = self.direction(&self.input, t);
        let (out_octets, out_pkts, out_errors) = self.direction(&self.output, t);
        Counters {
            in_octets,
            out_octets,
            in_pkts,
            out_pkts,
            in_errors,
            out_errors,
        }
    }

    /// (octets, packets, errors) of one direction at `t` seconds.
    fn direction(&self, d: &Direction, t: f64) -> (u64, u64, u64) {
        let mut bytes = d.bytes_if_always_up(t);
        if let Some(f) = self.flap
            && let Some(k) = f.last_started(t)
        {
            // Every outage starts at the same phase of every wave, so each loses the same
            // number of bytes; only the current one may be partial.
            let lost_per_outage =
                d.bytes_if_always_up(f.offset + f.down) - d.bytes_if_always_up(f.offset);
            let start = f.offset + k * f.period;
            bytes -= k * lost_per_outage;
            bytes -= if t - start < f.down {
                d.bytes_if_always_up(t) - d.bytes_if_always_up(start)
            } else {
                lost_per_outage
            };
        }
        let octets = d.base_bytes_per_s * self.uptime_at_start + bytes.max(0.0);
        let packets = octets / d.packet_size;
        let errors = packets * d.errors_per_packet;
        (octets as u64, packets as u64, errors as u64)
    }
}

fn uniform(rng: &mut fastrand::Rng, low: f64, high: f64) -> f64 {
    low + rng.f64() * (high - low)
}

fn log_uniform(rng: &mut fastrand::Rng, low: f64, high: f64) -> f64 {
    (low.ln() + rng.f64() * (high.ln() - low.ln())).exp()
}

/// splitmix64 finaliser over the three inputs: neighbouring indexes give unrelated seeds.
fn mix(seed: u64, device: u64, iface: u64) -> u64 {
    let mut h = seed;
    for v in [device, iface] {
        h = h.wrapping_add(GOLDEN).wrapping_add(v.wrapping_mul(GOLDEN));
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<Traffic> {
        (0..n).map(|i| Traffic::new(42, i / 8, i % 8)).collect()
    }

    #[test]
    fn same_seed_same_traffic_other_seed_other_traffic() {
        let a = Traffic::new(7, 3, 1).counters(Duration::from_secs(100));
        assert_eq!(a, Traffic::new(7, 3, 1).counters(Duration::from_secs(100)));
        assert_ne!(a, Traffic::new(8, 3, 1).counters(Duration::from_secs(100)));
        assert_ne!(a, Traffic::new(7, 3, 2).counters(Duration::from_secs(100)));
    }

    #[test]
    fn counters_never_decrease() {
        for traffic in fleet(200) {
            let mut last = traffic.counters(Duration::ZERO);
            // 250 ms steps over 3 diurnal periods: crosses every outage of flapping links.
            for step in 1..=(3 * 600 * 4) {
                let now = traffic.counters(Duration::from_millis(step * 250));
                for (a, b) in [
                    (last.in_octets, now.in_octets),
                    (last.out_octets, now.out_octets),
                    (last.in_pkts, now.in_pkts),
                    (last.out_pkts, now.out_pkts),
                    (last.in_errors, now.in_errors),
                    (last.out_errors, now.out_errors),
                ] {
                    assert!(b >= a, "{traffic:?} went back at step {step}: {a} -> {b}");
                }
                last = now;
            }
        }
    }

    #[test]
    fn rates_stay_within_the_band_of_their_base_rate() {
        let mut checked = 0;
        for traffic in fleet(200) {
            let (base_in, base_out) = traffic.base_bps();
            let (swing_in, swing_out) = traffic.swing();
            for base in [base_in, base_out] {
                assert!((MIN_BASE_BPS..=MAX_BASE_BPS).contains(&base), "{base}");
            }
            assert!(swing_in < 0.6 && swing_out < 0.6);
            for second in (0..1200).step_by(7) {
                let t0 = Duration::from_secs(second);
                let t1 = t0 + Duration::from_secs(1);
                // Only windows where the link is up throughout.
                if !traffic.is_up(t0) || traffic.next_status_change(t0).is_some_and(|c| c <= t1) {
                    continue;
                }
                let (a, b) = (traffic.counters(t0), traffic.counters(t1));
                let in_bps = (b.in_octets - a.in_octets) as f64 * 8.0;
                let out_bps = (b.out_octets - a.out_octets) as f64 * 8.0;
                for (rate, base, swing) in
                    [(in_bps, base_in, swing_in), (out_bps, base_out, swing_out)]
                {
                    // +-16 bits of slack for rounding each end to a whole byte.
                    assert!(
                        rate >= base * (1.0 - swing) - 16.0 && rate <= base * (1.0 + swing) + 16.0,
                        "rate {rate} outside base {base} +-{swing}"
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 10_000, "only {checked} windows checked");
    }

    #[test]
    fn average_rate_over_a_period_is_the_base_rate() {
        for traffic in fleet(50).into_iter().filter(|t| !t.flaps()) {
            let (base_in, _) = traffic.base_bps();
            let a = traffic.counters(Duration::from_secs(123));
            let b = traffic.counters(Duration::from_secs(123) + DIURNAL_PERIOD);
            let avg = (b.in_octets - a.in_octets) as f64 * 8.0 / DIURNAL_PERIOD.as_secs_f64();
            assert!((avg - base_in).abs() / base_in < 1e-6, "{avg} vs {base_in}");
        }
    }

    #[test]
    fn flapping_links_go_down_stop_counting_and_come_back() {
        let traffic = fleet(400)
            .into_iter()
            .find(Traffic::flaps)
            .expect("some interface flaps");
        let down_at = traffic
            .next_status_change(Duration::ZERO)
            .expect("a flapping link changes status");
        assert!(traffic.is_up(down_at - Duration::from_millis(5)));
        let inside = down_at + Duration::from_millis(10);
        assert!(!traffic.is_up(inside));
        let up_at = traffic.next_status_change(inside).expect("it comes back");
        let outage = up_at - down_at;
        assert!(outage >= Duration::from_secs(19) && outage <= Duration::from_secs(61));
        let mid = traffic.counters(inside);
        let late = traffic.counters(up_at - Duration::from_millis(10));
        assert_eq!(mid.in_octets, late.in_octets, "counters stop while down");
        assert!(traffic.is_up(up_at + Duration::from_millis(10)));
        let after = traffic.counters(up_at + Duration::from_secs(1));
        assert!(after.in_octets > late.in_octets, "counters resume");
        assert!(traffic.next_status_change(up_at).expect("flaps again") > up_at);
    }

    #[test]
    fn steady_links_never_change_status() {
        let traffic = fleet(400)
            .into_iter()
            .find(|t| !t.flaps())
            .expect("some interface is steady");
        assert_eq!(traffic.next_status_change(Duration::ZERO), None);
        assert!(traffic.is_up(Duration::from_secs(100_000)));
    }

    #[test]
    fn a_small_fraction_of_links_flap() {
        let flapping = fleet(1000).iter().filter(|t| t.flaps()).count();
        assert!((50..=150).contains(&flapping), "{flapping} of 1000 flap");
    }
}
