//! `netpulse-bench blocks`: size and speed of the compressed block codec
//! (`store::block`) on simulator-like series, one 2 h block per series.
//!
//! The series are synthesized here, not taken from the simulator crate: its traffic model
//! is private to it and the simulator is no dependency of the bench. They follow the same
//! model (`simulator/src/traffic.rs`, `simulator/src/device.rs`): per interface, octet
//! counters whose rate (50 Mbit/s to 5 Gbit/s, log-uniform) swings with a 600 s wave and
//! two faster harmonics, packet counters (300-1200 byte packets), error counters (a
//! quarter of the interfaces count 1e-9 to 1e-7 errors per packet, the rest none), 10% of
//! the links flapping (counters stop while down) and an oper-status, here as IF-MIB
//! numbers 1 (up) / 2 (down); per device, CPU percent, memory physical and used (4 KiB
//! pages), and a temperature in tenths of a degree, which the simulator does not have,
//! to measure a float gauge. A device has 16 interfaces: 116 series.
//!
//! The same series are encoded under four timestamp regimes: `grid` (exactly every
//! interval: a collector that aligns), `ms` (device timestamps on the millisecond, 0-3 ms
//! late), `us` (the same instants floored to the microsecond, as PostgreSQL returns them:
//! what blocks will be built from) and `ns` (as the collector receives them). One sample
//! in a thousand is missing. Every block is decoded and compared bit for bit. Timings are
//! one thread's, encode and decode only (generation excluded).

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use store::block::{self, ValueCoding};

/// 2026-01-01T00:00:00Z, the simulated fleet's start.
const T0: i64 = 1_767_225_600_000_000_000;
const NS_PER_S: i64 = 1_000_000_000;
/// Blocks start this long after the fleet started.
const BLOCK_START_S: i64 = 6 * 3_600;
const INTERFACES: usize = 16;
/// Series of one device: 7 per interface, CPU, memory used and physical, temperature.
const SERIES_PER_DEVICE: usize = INTERFACES * 7 + 4;
/// Period of the slow swing in traffic, as in the simulator.
const DIURNAL_S: f64 = 600.0;
/// Latest a sample's timestamp is after its tick.
const MAX_LATENCY_NS: u64 = 3_000_000;
/// Share of samples missing (collector restarts, lost notifications).
const MISSING: f64 = 0.001;

/// Settings of one run.
#[derive(Debug)]
pub struct Blocks {
    pub series: usize,
    pub block_minutes: u64,
    pub interval_s: u64,
    pub seed: u64,
}

/// What a series measures; one result line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Octets,
    Packets,
    Errors,
    Status,
    Cpu,
    Memory,
    Temperature,
}

impl Kind {
    const ALL: [Self; 7] = [
        Self::Octets,
        Self::Packets,
        Self::Errors,
        Self::Status,
        Self::Cpu,
        Self::Memory,
        Self::Temperature,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Octets => "octets",
            Self::Packets => "packets",
            Self::Errors => "errors",
            Self::Status => "status",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Temperature => "temperature",
        }
    }
}

/// How stored timestamps relate to the sampling ticks.
#[derive(Debug, Clone, Copy)]
struct Regime {
    name: &'static str,
    /// Whether samples are late by up to [`MAX_LATENCY_NS`].
    late: bool,
    /// Stored timestamps are floored to a multiple of this.
    floor_ns: i64,
}

const REGIMES: [Regime; 4] = [
    Regime {
        name: "grid",
        late: false,
        floor_ns: 1,
    },
    Regime {
        name: "ms",
        late: true,
        floor_ns: 1_000_000,
    },
    Regime {
        name: "us",
        late: true,
        floor_ns: 1_000,
    },
    Regime {
        name: "ns",
        late: true,
        floor_ns: 1,
    },
];

/// Totals of one kind of series under one regime.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    series: u64,
    points: u64,
    bytes: u64,
    integer_blocks: u64,
}

impl Tally {
    fn add(&mut self, other: &Self) {
        self.series += other.series;
        self.points += other.points;
        self.bytes += other.bytes;
        self.integer_blocks += other.integer_blocks;
    }

    fn bytes_per_point(&self) -> f64 {
        self.bytes as f64 / self.points.max(1) as f64
    }
}

/// Runs the measurement and prints one `blocks ...` line per regime and kind, and one per
/// regime for all series.
pub fn run(cfg: &Blocks) -> anyhow::Result<()> {
    if cfg.series == 0 || cfg.interval_s == 0 || cfg.block_minutes == 0 {
        bail!("--series, --interval and --block-minutes must be positive");
    }
    let ticks = usize::try_from(cfg.block_minutes * 60 / cfg.interval_s)?;
    if ticks == 0 || ticks > block::MAX_POINTS {
        bail!("{ticks} samples per block: need 1..={}", block::MAX_POINTS);
    }
    let devices = cfg.series.div_ceil(SERIES_PER_DEVICE);
    eprintln!(
        "  {} series ({devices} devices x {SERIES_PER_DEVICE}, truncated), {ticks} samples \
         {}s apart per block",
        cfg.series, cfg.interval_s
    );
    for regime in REGIMES {
        let mut tallies = [Tally::default(); Kind::ALL.len()];
        let mut timestamps_alone = Tally::default();
        let (mut encoding, mut decoding) = (Duration::ZERO, Duration::ZERO);
        let mut left = cfg.series;
        for d in 0..devices {
            let device = Device::new(cfg.seed, d);
            let mut noise = Rng::new(cfg.seed ^ 0x5eed ^ d as u64);
            let instants = device_instants(&mut noise, regime, ticks, cfg.interval_s);
            let all = device.series(&instants, regime.floor_ns);
            let wanted = left.min(all.len());
            left -= wanted;
            for (kind, points) in all.into_iter().take(wanted) {
                let started = Instant::now();
                let bytes = block::encode(&points)?;
                encoding += started.elapsed();
                let started = Instant::now();
                let back = block::decode(&bytes)?;
                decoding += started.elapsed();
                check_same(&points, &back).with_context(|| format!("device {d} {kind:?}"))?;
                let tally = &mut tallies[kind as usize];
                tally.series += 1;
                tally.points += points.len() as u64;
                tally.bytes += bytes.len() as u64;
                if matches!(block::summary(&bytes)?.values, ValueCoding::Integer { .. }) {
                    tally.integer_blocks += 1;
                }
            }
            // The cost of the timestamps alone: the device's instants with a constant value.
            let flat: Vec<(i64, f64)> = instants
                .iter()
                .map(|&(_, ts)| (floor(ts, regime.floor_ns), 0.0))
                .collect();
            timestamps_alone.series += 1;
            timestamps_alone.points += flat.len() as u64;
            timestamps_alone.bytes += block::encode(&flat)?.len() as u64;
        }
        let mut total = Tally::default();
        for kind in Kind::ALL {
            let t = &tallies[kind as usize];
            total.add(t);
            println!(
                "blocks timestamps={} kind={} series={} points={} bytes={} bytes_per_point={:.3} \
                 integer_coded_pct={:.1}",
                regime.name,
                kind.name(),
                t.series,
                t.points,
                t.bytes,
                t.bytes_per_point(),
                100.0 * t.integer_blocks as f64 / t.series.max(1) as f64,
            );
        }
        println!(
            "blocks timestamps={} kind=all series={} points={} bytes={} bytes_per_point={:.3} \
             timestamps_alone_bytes_per_point={:.3} encode_points_per_s={:.0} \
             decode_points_per_s={:.0}",
            regime.name,
            total.series,
            total.points,
            total.bytes,
            total.bytes_per_point(),
            timestamps_alone.bytes_per_point(),
            total.points as f64 / encoding.as_secs_f64(),
            total.points as f64 / decoding.as_secs_f64(),
        );
    }
    Ok(())
}

/// Fails unless `back` is `points` bit for bit.
fn check_same(points: &[(i64, f64)], back: &[(i64, f64)]) -> anyhow::Result<()> {
    if points.len() != back.len() {
        bail!("{} points came back as {}", points.len(), back.len());
    }
    for (i, (a, b)) in points.iter().zip(back).enumerate() {
        if a.0 != b.0 || a.1.to_bits() != b.1.to_bits() {
            bail!("point {i} {a:?} came back as {b:?}");
        }
    }
    Ok(())
}

/// The sampling instants of one device over one block: (seconds since fleet start, exact
/// ns timestamp), missing samples left out.
fn device_instants(
    rng: &mut Rng,
    regime: Regime,
    ticks: usize,
    interval_s: u64,
) -> Vec<(f64, i64)> {
    let start = T0 + BLOCK_START_S * NS_PER_S;
    let interval = interval_s as i64 * NS_PER_S;
    (0..ticks as i64)
        .filter_map(|i| {
            let latency = if regime.late {
                rng.below(MAX_LATENCY_NS) as i64
            } else {
                0
            };
            let missing = rng.f64() < MISSING;
            let ts = start + i * interval + latency;
            (!missing).then(|| ((ts - T0) as f64 / NS_PER_S as f64, ts))
        })
        .collect()
}

fn floor(ts: i64, unit: i64) -> i64 {
    ts - ts.rem_euclid(unit)
}

/// One sinusoidal component of a rate, relative to its base.
#[derive(Debug, Clone, Copy)]
struct Wave {
    amplitude: f64,
    omega: f64,
    phase: f64,
}

/// One direction of an interface (the simulator's `Direction`).
#[derive(Debug, Clone)]
struct Direction {
    bytes_per_s: f64,
    waves: [Wave; 3],
    packet_size: f64,
    errors_per_packet: f64,
}

impl Direction {
    fn new(rng: &mut Rng, bps: f64) -> Self {
        let diurnal = TAU / DIURNAL_S;
        let harmonic = |rng: &mut Rng, low: u64, high: u64| Wave {
            amplitude: rng.uniform(0.03, 0.06),
            omega: diurnal * (low + rng.below(high - low + 1)) as f64,
            phase: rng.uniform(0.0, TAU),
        };
        let waves = [
            Wave {
                amplitude: rng.uniform(0.25, 0.45),
                omega: diurnal,
                phase: rng.uniform(0.0, TAU),
            },
            harmonic(rng, 11, 19),
            harmonic(rng, 53, 89),
        ];
        Self {
            bytes_per_s: bps / 8.0,
            waves,
            packet_size: rng.uniform(300.0, 1200.0),
            errors_per_packet: if rng.f64() < 0.25 {
                rng.log_uniform(1e-9, 1e-7)
            } else {
                0.0
            },
        }
    }

    /// Bytes sent in `[0, t]` seconds if the link never went down.
    fn bytes_if_always_up(&self, t: f64) -> f64 {
        let mut x = t;
        for w in &self.waves {
            x += w.amplitude / w.omega * (w.phase.cos() - (w.omega * t + w.phase).cos());
        }
        self.bytes_per_s * x
    }
}

/// Periodic outages: down for `down` seconds every `period`, from `offset`.
#[derive(Debug, Clone, Copy)]
struct Flap {
    period: f64,
    offset: f64,
    down: f64,
}

impl Flap {
    fn last_started(&self, t: f64) -> Option<f64> {
        (t >= self.offset).then(|| ((t - self.offset) / self.period).floor())
    }
}

/// One interface (the simulator's `Traffic`).
#[derive(Debug, Clone)]
struct Interface {
    input: Direction,
    output: Direction,
    flap: Option<Flap>,
    uptime_at_start: f64,
}

impl Interface {
    fn new(rng: &mut Rng) -> Self {
        let in_bps = rng.log_uniform(50e6, 5e9);
        let out_bps = (in_bps * rng.uniform(0.5, 1.5)).clamp(50e6, 5e9);
        let input = Direction::new(rng, in_bps);
        let output = Direction::new(rng, out_bps);
        let flap = (rng.f64() < 0.1).then(|| {
            let period = DIURNAL_S * (1 + rng.below(3)) as f64;
            let down = rng.uniform(20.0, 60.0);
            Flap {
                period,
                offset: rng.uniform(0.0, period - down),
                down,
            }
        });
        Self {
            input,
            output,
            flap,
            uptime_at_start: rng.uniform(3_600.0, 20.0 * 86_400.0),
        }
    }

    fn is_up(&self, t: f64) -> bool {
        self.flap.is_none_or(|f| {
            f.last_started(t)
                .is_none_or(|k| t - (f.offset + k * f.period) >= f.down)
        })
    }

    /// (octets, packets, errors) of one direction at `t` seconds.
    fn direction(&self, d: &Direction, t: f64) -> [f64; 3] {
        let mut bytes = d.bytes_if_always_up(t);
        if let Some(f) = self.flap
            && let Some(k) = f.last_started(t)
        {
            let lost = d.bytes_if_always_up(f.offset + f.down) - d.bytes_if_always_up(f.offset);
            let start = f.offset + k * f.period;
            bytes -= k * lost;
            bytes -= if t - start < f.down {
                d.bytes_if_always_up(t) - d.bytes_if_always_up(start)
            } else {
                lost
            };
        }
        let octets = (d.bytes_per_s * self.uptime_at_start + bytes.max(0.0)).floor();
        let packets = (octets / d.packet_size).floor();
        [octets, packets, (packets * d.errors_per_packet).floor()]
    }
}

/// CPU, memory and temperature of a device (the simulator's `System`, plus temperature).
#[derive(Debug, Clone)]
struct System {
    cpu_base: f64,
    cpu_swing: f64,
    phase: f64,
    memory_physical: f64,
    memory_base: f64,
    temperature_base: f64,
}

impl System {
    fn new(rng: &mut Rng) -> Self {
        Self {
            cpu_base: rng.uniform(5.0, 50.0),
            cpu_swing: rng.uniform(2.0, 17.0),
            phase: rng.uniform(0.0, TAU),
            memory_physical: (8u64 << 30 << rng.below(4)) as f64,
            memory_base: rng.uniform(0.3, 0.7),
            temperature_base: rng.uniform(35.0, 60.0),
        }
    }

    fn wave(&self, t: f64, harmonic: f64) -> f64 {
        (TAU * harmonic / DIURNAL_S * t + self.phase).sin()
    }

    fn cpu(&self, t: f64) -> f64 {
        let v = self.cpu_base + self.cpu_swing * self.wave(t, 1.0) + 3.0 * self.wave(t, 37.0);
        v.clamp(0.0, 100.0).round()
    }

    fn memory_used(&self, t: f64) -> f64 {
        let share = (self.memory_base + 0.05 * self.wave(t, 2.0)).clamp(0.0, 1.0);
        ((self.memory_physical * share) as u64 & !0xfff) as f64
    }

    /// Degrees in tenths, as sensors report them: 45.3, not 45.29871.
    fn temperature(&self, t: f64) -> f64 {
        let degrees = self.temperature_base + 4.0 * self.wave(t, 0.5) + 0.3 * self.wave(t, 23.0);
        (degrees * 10.0).round() / 10.0
    }
}

/// One simulated device.
#[derive(Debug)]
struct Device {
    interfaces: Vec<Interface>,
    system: System,
}

impl Device {
    fn new(seed: u64, index: usize) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64);
        Self {
            interfaces: (0..INTERFACES).map(|_| Interface::new(&mut rng)).collect(),
            system: System::new(&mut rng),
        }
    }

    /// Every series of the device sampled at `instants`, timestamps floored to `floor_ns`.
    fn series(&self, instants: &[(f64, i64)], floor_ns: i64) -> Vec<(Kind, Vec<(i64, f64)>)> {
        let sample = |f: &dyn Fn(f64) -> f64| -> Vec<(i64, f64)> {
            instants
                .iter()
                .map(|&(t, ts)| (floor(ts, floor_ns), f(t)))
                .collect()
        };
        let mut out = Vec::with_capacity(SERIES_PER_DEVICE);
        for i in &self.interfaces {
            for d in [&i.input, &i.output] {
                out.push((Kind::Octets, sample(&|t| i.direction(d, t)[0])));
                out.push((Kind::Packets, sample(&|t| i.direction(d, t)[1])));
                out.push((Kind::Errors, sample(&|t| i.direction(d, t)[2])));
            }
            out.push((
                Kind::Status,
                sample(&|t| if i.is_up(t) { 1.0 } else { 2.0 }),
            ));
        }
        let s = &self.system;
        out.push((Kind::Cpu, sample(&|t| s.cpu(t))));
        out.push((Kind::Memory, sample(&|t| s.memory_used(t))));
        out.push((Kind::Memory, sample(&|_| s.memory_physical)));
        out.push((Kind::Temperature, sample(&|t| s.temperature(t))));
        out
    }
}

/// splitmix64: deterministic and dependency-free.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + self.f64() * (high - low)
    }

    fn log_uniform(&mut self, low: f64, high: f64) -> f64 {
        (low.ln() + self.f64() * (high.ln() - low.ln())).exp()
    }
}

/// The paths of a simulated device's series, `/bench/series[id=K]`.
pub(crate) fn series_paths() -> anyhow::Result<Vec<std::sync::Arc<model::Path>>> {
    Ok((0..SERIES_PER_DEVICE)
        .map(|k| {
            format!("/bench/series[id={k}]")
                .parse()
                .map(std::sync::Arc::new)
        })
        .collect::<Result<_, _>>()?)
}

/// Which series of a simulated device to write, and how often.
pub(crate) struct Shape<'a> {
    /// Samples per series (fewer: a few are missing, as in the fleet).
    pub ticks: usize,
    /// Seconds between samples.
    pub interval_s: u64,
    /// Indexes of the series written (`None`: all).
    pub series: Option<&'a [usize]>,
}

/// The series of a simulated device with 4 interfaces: their 28 counters and statuses,
/// and the 4 system gauges (what `netpulse all --simulate` devices report as numbers).
pub(crate) const SMALL_DEVICE: [usize; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 112, 113, 114, 115,
];

/// Writes samples of simulated device `d` (named `dev-DDDDD`, µs timestamps up to 3 ms
/// late) through the real store, as `shape` says; returns the samples written and the
/// newest timestamp.
pub(crate) async fn write_device(
    store: &dyn store::Store,
    seed: u64,
    d: usize,
    paths: &[std::sync::Arc<model::Path>],
    shape: &Shape<'_>,
) -> anyhow::Result<(u64, i64)> {
    use model::{DeviceKey, Sample, Value};
    let regime = REGIMES[2];
    let device = Device::new(seed, d);
    let key = DeviceKey::new(format!("dev-{d:05}"))?;
    let mut noise = Rng::new(seed ^ 0x5eed ^ d as u64);
    let instants = device_instants(&mut noise, regime, shape.ticks, shape.interval_s);
    let (mut written, mut last_ts) = (0, 0);
    let mut batch = Vec::new();
    for (k, (_, points)) in device
        .series(&instants, regime.floor_ns)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| shape.series.is_none_or(|keep| keep.contains(k)))
    {
        for (ts, v) in points {
            last_ts = last_ts.max(ts);
            batch.push(Sample {
                device: key.clone(),
                path: paths[k].clone(),
                ts,
                value: Value::Float(v),
            });
            if batch.len() == 5_000 {
                written += store.write_samples(&batch).await?.written;
                batch.clear();
            }
        }
    }
    written += store.write_samples(&batch).await?.written;
    Ok((written, last_ts))
}

/// Settings of `netpulse-bench blocks-on-disk`.
#[derive(Debug)]
pub struct OnDisk {
    pub database_url: String,
    pub devices: usize,
    pub hours: u64,
    pub seed: u64,
}

/// Writes `hours` of the simulated fleet (10 s, µs timestamps up to 3 ms late) through
/// the real store into PostgreSQL, measures the raw table, lets maintenance compress
/// every whole hour, and measures the blocks table: bytes per sample on disk, tables,
/// indexes and TOAST included (`pg_total_relation_size`).
pub async fn on_disk(cfg: &OnDisk) -> anyhow::Result<()> {
    use model::DeviceKey;
    let store = store::open(&cfg.database_url, true).await?;
    let paths = series_paths()?;
    let mut written = 0u64;
    let mut last_ts = 0;
    for d in 0..cfg.devices {
        let shape = Shape {
            ticks: usize::try_from(cfg.hours * 360)?,
            interval_s: 10,
            series: None,
        };
        let (n, last) = write_device(store.as_ref(), cfg.seed, d, &paths, &shape).await?;
        written += n;
        last_ts = last_ts.max(last);
        eprintln!("  device {}/{} written", d + 1, cfg.devices);
    }
    let pool = sqlx::PgPool::connect(&cfg.database_url).await?;
    let size = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await }
    };
    const RAW: &str = "SELECT COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint \
                       FROM pg_inherits i WHERE i.inhparent = 'samples'::regclass";
    let raw_before = size(RAW).await?;
    // Every hour up to the last sample is past the 2 h compression age here.
    let now = last_ts + 3 * 3_600 * NS_PER_S;
    let mut report = store::MaintenanceReport::default();
    loop {
        let r = store.maintain(now, &store::Retention::default()).await?;
        report.compressed_samples += r.compressed_samples;
        if r.compressed_hours == 0 {
            break;
        }
        report.compressed_hours += r.compressed_hours;
    }
    let raw_after = size(RAW).await?;
    // Query latency on what is now mostly blocks: one series over the whole span in
    // 1-minute steps, then 32 series of one device the same way (median of 11 runs each).
    let key = DeviceKey::new("dev-00000")?;
    let (from, to) = (
        last_ts - i64::try_from(cfg.hours)? * 3_600 * NS_PER_S,
        last_ts,
    );
    let step = 60 * NS_PER_S;
    let mut one = Vec::new();
    let mut many = Vec::new();
    for _ in 0..11 {
        let started = std::time::Instant::now();
        let buckets = store.range_step(&key, &paths[0], from, to, step).await?;
        one.push(started.elapsed());
        anyhow::ensure!(
            buckets.iter().any(|b| b.stats.is_some()),
            "no data read back"
        );
        let started = std::time::Instant::now();
        for path in paths.iter().take(32) {
            store.range_step(&key, path, from, to, step).await?;
        }
        many.push(started.elapsed());
    }
    one.sort();
    many.sort();
    let blocks = size("SELECT pg_total_relation_size('sample_blocks')::bigint").await?;
    let packed = report.compressed_samples.max(1) as f64;
    println!(
        "blocks_on_disk devices={} hours={} samples={written} raw_bytes={raw_before} \
         raw_bytes_per_sample={:.2} compressed_samples={} block_bytes={blocks} \
         block_bytes_per_sample={:.2} raw_left_bytes={raw_after} \
         step_1m_one_series_ms={:.1} step_1m_32_series_ms={:.1}",
        cfg.devices,
        cfg.hours,
        raw_before as f64 / written.max(1) as f64,
        report.compressed_samples,
        blocks as f64 / packed,
        one[5].as_secs_f64() * 1e3,
        many[5].as_secs_f64() * 1e3,
    );
    Ok(())
}
