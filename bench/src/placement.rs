//! `netpulse-bench placement`: the operator's placement (`operator::placement::plan`) on a
//! fleet: time to plan, writes for the initial placement, devices moved by a scale-out,
//! balance. Pure computation, one thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use operator::placement::{Action, Collector, CollectorState, Device, Plan, Settings, plan, score};

/// Settings of `netpulse-bench placement`.
#[derive(Debug, clap::Args)]
pub struct Placement {
    /// Devices in the pool.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Collector pods before the scale-out (one more after it).
    #[arg(long, default_value_t = 20)]
    pub collectors: usize,
    /// Timed runs of each plan (the median is printed).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Device weights drawn from 1..=this (a stable hash of the device name); 1 for a
    /// unit-weight fleet.
    #[arg(long, default_value_t = 1)]
    pub max_weight: u32,
}

fn pods(n: usize) -> Vec<Collector> {
    (0..n)
        .map(|i| Collector {
            name: format!("netpulse-collector-7d9f8b6c5-{i:05}"),
            state: CollectorState::Ready,
        })
        .collect()
}

/// Applies `plan` with every incoming collector synced at once; returns the owner
/// changes.
fn apply(devices: &mut [Device], plan: &Plan) -> usize {
    let actions: std::collections::HashMap<&str, &Action> =
        plan.actions.iter().map(|(k, a)| (k.as_str(), a)).collect();
    let mut flips = 0;
    for d in devices.iter_mut() {
        match actions.get(d.key.as_str()) {
            Some(Action::Assign { collector, epoch })
            | Some(Action::CompleteHandoff {
                to: collector,
                epoch,
            }) => {
                d.owner = Some(collector.clone());
                d.epoch = *epoch;
                d.next = None;
                flips += 1;
            }
            Some(Action::BeginHandoff { to }) => d.next = Some(to.clone()),
            Some(Action::CancelHandoff) => d.next = None,
            None => {}
        }
        d.next_synced = d.next.is_some();
    }
    flips
}

fn timed(
    devices: &[Device],
    collectors: &[Collector],
    settings: &Settings,
    runs: usize,
) -> (Duration, Plan) {
    let mut times = Vec::with_capacity(runs);
    let mut last = Plan::default();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = plan(devices, collectors, settings);
        times.push(started.elapsed());
    }
    times.sort();
    (times[times.len() / 2], last)
}

pub fn run(cfg: &Placement) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.devices > 0 && cfg.collectors > 0 && cfg.max_weight > 0,
        "need devices, collectors and a weight of at least 1"
    );
    let settings = Settings {
        max_handoffs: usize::MAX,
        ..Settings::default()
    };
    let mut devices: Vec<Device> = (0..cfg.devices)
        .map(|i| {
            let key = format!("network/leaf-{i:05}");
            let weight = (score(&key, "weight") % u64::from(cfg.max_weight)) as u32 + 1;
            Device {
                key,
                weight,
                owner: None,
                epoch: 0,
                next: None,
                next_synced: false,
            }
        })
        .collect();
    let total: u64 = devices.iter().map(|d| u64::from(d.weight)).sum();
    let before = pods(cfg.collectors);
    let (initial_time, initial) = timed(&devices, &before, &settings, cfg.runs);
    let initial_writes = initial.actions.len();
    apply(&mut devices, &initial);
    let (steady_time, steady) = timed(&devices, &before, &settings, cfg.runs);
    anyhow::ensure!(
        steady.actions.is_empty(),
        "a settled pool should not change"
    );
    let load_ratio = |devices: &[Device], n: usize| {
        let mut loads: BTreeMap<&str, u64> = BTreeMap::new();
        for d in devices {
            *loads.entry(d.owner.as_deref().unwrap_or("")).or_default() += u64::from(d.weight);
        }
        let max = loads.values().copied().max().unwrap_or(0);
        max as f64 / (total as f64 / n as f64)
    };
    let initial_ratio = load_ratio(&devices, cfg.collectors);

    let after = pods(cfg.collectors + 1);
    let owners: Vec<Option<String>> = devices.iter().map(|d| d.owner.clone()).collect();
    let (scale_time, scale) = timed(&devices, &after, &settings, cfg.runs);
    let handoffs = scale.actions.len();
    apply(&mut devices, &scale);
    // Later rounds flip the handoffs (and start any that were deferred) until nothing is
    // left to do: two rounds when every move starts in the first plan.
    let mut rounds = 1;
    loop {
        let next = plan(&devices, &after, &settings);
        if next.actions.is_empty() {
            break;
        }
        anyhow::ensure!(rounds < 10, "the scale-out does not settle");
        apply(&mut devices, &next);
        rounds += 1;
    }
    let (moved, moved_weight) = devices
        .iter()
        .zip(&owners)
        .filter(|(d, o)| d.owner != **o)
        .fold((0, 0), |(n, w), (d, _)| (n + 1, w + u64::from(d.weight)));
    let ideal = total as f64 / (cfg.collectors + 1) as f64;
    let scaled_ratio = load_ratio(&devices, cfg.collectors + 1);

    // A pod lost: plan time and devices re-placed at once.
    let mut lost = after.clone();
    lost[0].state = CollectorState::Lost;
    let (loss_time, loss) = timed(&devices, &lost, &settings, cfg.runs);
    let reassigned = loss
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Assign { .. }))
        .count();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "placement devices={} weight={total} collectors={} initial_plan_ms={:.2} \
         initial_writes={initial_writes} steady_plan_ms={:.2} max_over_mean_load={initial_ratio:.3} \
         scale_out_plan_ms={:.2} scale_out_handoffs={handoffs} scale_out_rounds={rounds} \
         scale_out_moved={moved} scale_out_moved_weight={moved_weight} \
         scale_out_ideal_weight={ideal:.1} moved_over_ideal={:.3} \
         max_over_mean_after={scaled_ratio:.3} loss_plan_ms={:.2} loss_reassigned={reassigned}",
        cfg.devices,
        cfg.collectors,
        ms(initial_time),
        ms(steady_time),
        ms(scale_time),
        moved_weight as f64 / ideal,
        ms(loss_time),
    );
    Ok(())
}

/// Settings of `netpulse-bench failover`.
#[derive(Debug, clap::Args)]
pub struct FailoverArgs {
    /// Devices in the pool.
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Collector pods.
    #[arg(long, default_value_t = 20)]
    pub collectors: usize,
    /// Milliseconds from a change in the cluster to the operator's watch seeing it.
    #[arg(long, default_value_t = 500)]
    pub watch_latency_ms: u64,
    /// Milliseconds of one API write's round trip.
    #[arg(long, default_value_t = 20)]
    pub api_latency_ms: u64,
    /// Milliseconds a pod may be NotReady before its devices move.
    #[arg(long, default_value_t = 2_000)]
    pub grace_ms: u64,
}

/// Runs the operator's controller logic on a cluster in memory
/// (`operator::simulation::failover`): one collector pod turns NotReady; prints how long
/// until every device it owned has a new owner.
pub fn failover(cfg: &FailoverArgs) -> anyhow::Result<()> {
    let ms = Duration::from_millis;
    let sim = operator::simulation::Failover {
        devices: cfg.devices,
        collectors: cfg.collectors,
        watch_latency: ms(cfg.watch_latency_ms),
        api_latency: ms(cfg.api_latency_ms),
        grace: ms(cfg.grace_ms),
    };
    let r = operator::simulation::failover(&sim);
    anyhow::ensure!(
        !r.reowned_after.is_zero(),
        "devices were not re-owned: {r:?}"
    );
    println!(
        "failover devices={} collectors={} watch_latency_ms={} api_latency_ms={} grace_ms={} \
         devices_lost={} reowned_after_ms={:.0} writes={} reconciles={} planning_ms={:.1}",
        cfg.devices,
        cfg.collectors,
        cfg.watch_latency_ms,
        cfg.api_latency_ms,
        cfg.grace_ms,
        r.devices_lost,
        r.reowned_after.as_secs_f64() * 1e3,
        r.writes,
        r.reconciles,
        r.planning.as_secs_f64() * 1e3,
    );
    Ok(())
}
