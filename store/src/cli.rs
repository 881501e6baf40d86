//! Raw output of CLI (SSH show) commands and the changes between consecutive outputs.
//!
//! The store keeps the latest output of each (device, command) and, when a new output
//! differs from it, a [`CliChange`]: a unified diff, bounded in size. What counts as a
//! difference is decided here, purely ([`diff`]): line endings are normalised (CRLF and a
//! missing final newline are no change) and whitespace at the end of a line is ignored, so
//! the cosmetic noise of a device's terminal is not a change. The diff shows the lines so
//! normalised.
//!
//! The diff is a shortest line edit script (Myers) after the common first and last lines
//! are set aside. Its cost grows with the number of lines changed, so beyond
//! [`MAX_EDIT_LINES`] changed lines the middle part is shown as removed whole and added
//! whole instead: still a correct diff, deterministic, only longer (and `added`/`removed`
//! then count those whole parts).
//!
//! Beside the raw output, a command whose output a TextFSM template parsed is kept as a
//! [`CliSnapshot`]: the parsed rows as JSON objects. The store keeps a history of them in
//! which consecutive snapshots differ: one equal to the latest (same template, rows and
//! `truncated`, compared as canonical JSON: keys sorted, NUL as U+FFFD) only moves the
//! latest's [`CliSnapshot::last_seen`]. Snapshots are bounded ([`MAX_SNAPSHOT_ROWS`],
//! [`MAX_SNAPSHOT_BYTES`]; [`bound_rows`] cuts rows to fit) and expire as changes do,
//! except the latest of each command.

use model::{DeviceKey, TimestampNs};

/// Largest output stored, in bytes (1 MiB). The caller bounds what it reads from a device
/// (and says so with [`CliOutput::truncated`]); a larger one is refused with
/// [`CliError::OutputTooLarge`].
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Largest command stored, in bytes.
pub const MAX_COMMAND_BYTES: usize = 1024;

/// Largest diff kept with a change, in bytes (64 KiB), marker line included: longer diffs
/// are cut at a line boundary and end with a line starting with [`CUT_MARKER`].
pub const MAX_DIFF_BYTES: usize = 64 * 1024;

/// Start of the last line of a cut diff, which goes on to say how much was cut.
pub const CUT_MARKER: &str = "\\ diff truncated:";

/// Lines of context around each change in a diff.
pub const CONTEXT_LINES: usize = 3;

/// Most changed (added plus removed) lines the diff looks for a shortest edit script
/// through; see the module documentation.
pub const MAX_EDIT_LINES: usize = 1000;

/// Most changes one [`crate::Store::cli_changes`] call returns.
pub const MAX_CHANGES_LIMIT: usize = 1000;

/// Most rows one [`CliSnapshot`] holds.
pub const MAX_SNAPSHOT_ROWS: usize = 10_000;

/// Largest [`CliSnapshot`] stored, in bytes of its canonical JSON rows (1 MiB).
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;

/// Most snapshots one [`crate::Store::cli_snapshots`] call returns (each may be up to
/// [`MAX_SNAPSHOT_BYTES`]).
pub const MAX_SNAPSHOTS_LIMIT: usize = 100;

/// One parsed row: column name to value (TextFSM `List` values as arrays of strings,
/// other values as strings).
pub type SnapshotRow = serde_json::Map<String, serde_json::Value>;

/// The table a template parsed from one output of a command: a structured snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSnapshot {
    /// The device it ran on.
    pub device: DeviceKey,
    /// The command, as for [`CliOutput::command`].
    pub command: String,
    /// The template that parsed it (its file name, `arista_eos_show_version.textfsm`):
    /// non-empty, one line, at most [`MAX_COMMAND_BYTES`].
    pub template: String,
    /// When this snapshot was first seen, ns since the epoch (stored as samples' times
    /// are: microseconds on PostgreSQL). When recording: when the output was taken.
    pub ts: TimestampNs,
    /// When an equal snapshot was last seen. Ignored when recording (it is `ts`).
    pub last_seen: TimestampNs,
    /// The rows, in the caller's order (the collector sorts them): at most
    /// [`MAX_SNAPSHOT_ROWS`], at most [`MAX_SNAPSHOT_BYTES`] as canonical JSON. NUL in
    /// any key or string is stored as U+FFFD.
    pub rows: Vec<SnapshotRow>,
    /// The caller cut the rows at its bound ([`bound_rows`]).
    pub truncated: bool,
}

/// What [`crate::Store::record_cli_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// The first snapshot of the command: stored.
    First,
    /// It differs from the latest: stored as the new latest, the previous one stays in
    /// the history.
    Changed,
    /// Equal to the latest: only the latest's `last_seen` moved.
    Unchanged,
    /// Older than the latest's `last_seen` (late delivery): nothing stored.
    Late,
}

/// The raw output of one run of a command on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOutput {
    /// The device it ran on.
    pub device: DeviceKey,
    /// The command as sent (`show running-config`): non-empty, one line, at most
    /// [`MAX_COMMAND_BYTES`].
    pub command: String,
    /// When it ran, ns since the epoch. Stored as [`crate::Store`] stores timestamps
    /// (microseconds on PostgreSQL). For the latest output it is when it was last seen.
    pub ts: TimestampNs,
    /// What the device printed, at most [`MAX_OUTPUT_BYTES`]. NUL is stored as U+FFFD.
    pub output: String,
    /// The caller cut the output at its own bound.
    pub truncated: bool,
    /// Whether a difference from the previous output is recorded as a change. Off for
    /// outputs whose differences are not events (a `show interfaces` whose counters
    /// become series): the output is still kept as the latest. Not stored.
    pub track_changes: bool,
}

/// A change between two consecutive outputs of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliChange {
    /// The device.
    pub device: DeviceKey,
    /// The command.
    pub command: String,
    /// When the new output was seen.
    pub ts: TimestampNs,
    /// When the previous output was last seen.
    pub previous_ts: TimestampNs,
    /// Unified diff from the previous output to the new one: `---`/`+++` headers naming
    /// the command and the two times, `@@` hunks with [`CONTEXT_LINES`] of context, at most
    /// [`MAX_DIFF_BYTES`] (see [`CUT_MARKER`]).
    pub diff: String,
    /// Lines added (the whole diff's, even when its text was cut).
    pub added: u32,
    /// Lines removed (the whole diff's, even when its text was cut).
    pub removed: u32,
}

/// A diff as [`diff`] computes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The unified diff text, bounded as [`CliChange::diff`].
    pub text: String,
    /// Lines added.
    pub added: u32,
    /// Lines removed.
    pub removed: u32,
}

/// Why CLI output or a query about it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The output is larger than [`MAX_OUTPUT_BYTES`]: the caller must bound it.
    #[error(
        "output of {command:?} is {size} bytes; at most {MAX_OUTPUT_BYTES} are stored \
         (cut it and set `truncated`)"
    )]
    OutputTooLarge {
        /// The command.
        command: String,
        /// Its output's size in bytes.
        size: usize,
    },
    /// The command is empty, longer than [`MAX_COMMAND_BYTES`] or holds a control
    /// character (a line break would break the diff headers).
    #[error(
        "command {0:?} is not storable: non-empty, one line, at most {MAX_COMMAND_BYTES} bytes"
    )]
    Command(String),
    /// The limit is zero.
    #[error("the limit must be at least 1")]
    NoLimit,
    /// The limit is above [`MAX_CHANGES_LIMIT`].
    #[error("limit {0} is too large; at most {MAX_CHANGES_LIMIT}")]
    LimitTooLarge(usize),
    /// A snapshot holds more than [`MAX_SNAPSHOT_ROWS`] rows or more than
    /// [`MAX_SNAPSHOT_BYTES`] of JSON: the caller must bound it ([`bound_rows`]).
    #[error(
        "snapshot of {command:?} has {rows} rows in {bytes} bytes of JSON; at most \
         {MAX_SNAPSHOT_ROWS} rows and {MAX_SNAPSHOT_BYTES} bytes are stored (cut it with \
         `bound_rows` and set `truncated`)"
    )]
    SnapshotTooLarge {
        /// The command.
        command: String,
        /// Its rows.
        rows: usize,
        /// Its canonical JSON's size in bytes.
        bytes: usize,
    },
    /// The template name is empty, longer than [`MAX_COMMAND_BYTES`] or holds a control
    /// character.
    #[error(
        "template {0:?} is not storable: non-empty, one line, at most {MAX_COMMAND_BYTES} bytes"
    )]
    Template(String),
    /// A snapshot query's limit is above [`MAX_SNAPSHOTS_LIMIT`].
    #[error("limit {0} is too large for snapshots; at most {MAX_SNAPSHOTS_LIMIT}")]
    SnapshotLimitTooLarge(usize),
}

/// Whether `name` is a storable command or template name: non-empty, one line, bounded.
fn storable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_COMMAND_BYTES && !name.chars().any(char::is_control)
}

/// The first characters of `name`, for an error message.
fn shown(name: &str) -> String {
    name.chars().take(80).collect()
}

/// Whether `output` may be stored, or why not.
pub fn check_output(output: &CliOutput) -> Result<(), CliError> {
    let command = &output.command;
    if !storable_name(command) {
        return Err(CliError::Command(shown(command)));
    }
    if output.output.len() > MAX_OUTPUT_BYTES {
        return Err(CliError::OutputTooLarge {
            command: command.clone(),
            size: output.output.len(),
        });
    }
    Ok(())
}

/// Whether `limit` is a valid [`crate::Store::cli_changes`] limit, or why not.
pub fn check_limit(limit: usize) -> Result<(), CliError> {
    match limit {
        0 => Err(CliError::NoLimit),
        n if n > MAX_CHANGES_LIMIT => Err(CliError::LimitTooLarge(n)),
        _ => Ok(()),
    }
}

/// Whether `limit` is a valid [`crate::Store::cli_snapshots`] limit, or why not.
pub fn check_snapshot_limit(limit: usize) -> Result<(), CliError> {
    match limit {
        0 => Err(CliError::NoLimit),
        n if n > MAX_SNAPSHOTS_LIMIT => Err(CliError::SnapshotLimitTooLarge(n)),
        _ => Ok(()),
    }
}

/// The rows of `snapshot` as stored: canonical JSON (an array of objects, keys sorted,
/// no insignificant whitespace, NUL as U+FFFD), or why the snapshot may not be stored.
/// Equal snapshots give equal text, which is how the store compares them.
pub fn check_snapshot(snapshot: &CliSnapshot) -> Result<String, CliError> {
    if !storable_name(&snapshot.command) {
        return Err(CliError::Command(shown(&snapshot.command)));
    }
    if !storable_name(&snapshot.template) {
        return Err(CliError::Template(shown(&snapshot.template)));
    }
    let json = canonical_rows(&snapshot.rows);
    if snapshot.rows.len() > MAX_SNAPSHOT_ROWS || json.len() > MAX_SNAPSHOT_BYTES {
        return Err(CliError::SnapshotTooLarge {
            command: snapshot.command.clone(),
            rows: snapshot.rows.len(),
            bytes: json.len(),
        });
    }
    Ok(json)
}

/// `rows` cut to what a snapshot may hold (the first [`MAX_SNAPSHOT_ROWS`] whose
/// canonical JSON fits in [`MAX_SNAPSHOT_BYTES`]), and whether any were cut.
pub fn bound_rows(mut rows: Vec<SnapshotRow>) -> (Vec<SnapshotRow>, bool) {
    // `[` and `]`, then each row and a comma between rows.
    let mut bytes = 2;
    let mut keep = 0;
    for row in rows.iter().take(MAX_SNAPSHOT_ROWS) {
        let size = canonical(&serde_json::Value::Object(row.clone()))
            .to_string()
            .len()
            + usize::from(keep > 0);
        if bytes + size > MAX_SNAPSHOT_BYTES {
            break;
        }
        bytes += size;
        keep += 1;
    }
    let cut = keep < rows.len();
    rows.truncate(keep);
    (rows, cut)
}

/// Rows as canonical JSON text.
fn canonical_rows(rows: &[SnapshotRow]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| canonical(&serde_json::Value::Object(row.clone())))
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// `value` with object keys in byte order (whatever map the build of `serde_json` uses)
/// and NUL in keys and strings as U+FFFD (PostgreSQL's `jsonb` refuses NUL).
fn canonical(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    let text = |s: &str| s.replace('\0', "\u{FFFD}");
    match value {
        J::String(s) => J::String(text(s)),
        J::Array(items) => J::Array(items.iter().map(canonical).collect()),
        J::Object(map) => {
            let sorted: std::collections::BTreeMap<String, J> =
                map.iter().map(|(k, v)| (text(k), canonical(v))).collect();
            J::Object(sorted.into_iter().collect())
        }
        other => other.clone(),
    }
}

/// Stored snapshot rows back to [`CliSnapshot::rows`].
pub(crate) fn stored_rows(json: &str) -> crate::Result<Vec<SnapshotRow>> {
    serde_json::from_str(json)
        .map_err(|e| crate::Error::Corrupt(format!("stored CLI snapshot rows: {e}")))
}

/// What recording a snapshot does, given the latest stored one of its command: its
/// `last_seen` and whether it equals the new one.
pub(crate) fn plan_snapshot(
    latest: Option<(TimestampNs, bool)>,
    ts: TimestampNs,
) -> SnapshotOutcome {
    match latest {
        None => SnapshotOutcome::First,
        Some((last_seen, _)) if ts < last_seen => SnapshotOutcome::Late,
        Some((_, true)) => SnapshotOutcome::Unchanged,
        Some((_, false)) => SnapshotOutcome::Changed,
    }
}

/// What recording an output does, given the stored latest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Older than the stored latest (late delivery): nothing.
    Ignore,
    /// The same output (after normalisation): only the latest's time moves.
    Touch,
    /// The first output, or a changed one: it becomes the latest, and the change (if
    /// there was a previous output) is recorded.
    Replace(Option<CliChange>),
}

/// What recording `current` does when `previous` is the stored latest output (of the same
/// device and command). Both carry their stored text and times.
pub(crate) fn plan(previous: Option<&CliOutput>, current: &CliOutput) -> Plan {
    let Some(previous) = previous else {
        return Plan::Replace(None);
    };
    if current.ts < previous.ts {
        return Plan::Ignore;
    }
    if !current.track_changes {
        return if previous.output == current.output {
            Plan::Touch
        } else {
            Plan::Replace(None)
        };
    }
    let old = label(&current.command, previous.ts);
    let new = label(&current.command, current.ts);
    match diff(&previous.output, &current.output, &old, &new) {
        None => Plan::Touch,
        Some(d) => Plan::Replace(Some(CliChange {
            device: current.device.clone(),
            command: current.command.clone(),
            ts: current.ts,
            previous_ts: previous.ts,
            diff: d.text,
            added: d.added,
            removed: d.removed,
        })),
    }
}

/// A stored line count back to a [`CliChange`] count.
pub(crate) fn stored_count(n: i64) -> crate::Result<u32> {
    u32::try_from(n).map_err(|_| crate::Error::Corrupt(format!("CLI change line count {n}")))
}

/// A diff header: the command, a tab, the time in RFC 3339 UTC with nanoseconds.
fn label(command: &str, ts: TimestampNs) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ts)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!("{command}\t{time}")
}

/// The unified diff from `previous` to `current`, `None` when they are equal once
/// normalised (see the module documentation). `old` and `new` name the two sides in the
/// `---` and `+++` headers.
pub fn diff(previous: &str, current: &str, old: &str, new: &str) -> Option<Diff> {
    let a = normalise(previous);
    let b = normalise(current);
    if a == b {
        return None;
    }
    let ops = edit_script(&a, &b);
    let added = ops.iter().filter(|op| matches!(op, Op::Insert(_))).count();
    let removed = ops.iter().filter(|op| matches!(op, Op::Delete(_))).count();
    let mut text = format!("--- {old}\n+++ {new}\n");
    for hunk in hunks(&ops) {
        render(&mut text, &ops[hunk.0..hunk.1], &a, &b);
    }
    Some(Diff {
        text: bound(text, MAX_DIFF_BYTES),
        added: u32::try_from(added).unwrap_or(u32::MAX),
        removed: u32::try_from(removed).unwrap_or(u32::MAX),
    })
}

/// The lines of `text` as compared: split at LF or CRLF, without trailing whitespace.
fn normalise(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

/// One step of an edit script: indexes into the old (`a`) and new (`b`) lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `a[i] == b[j]`.
    Equal(usize, usize),
    /// `a[i]` removed.
    Delete(usize),
    /// `b[j]` added.
    Insert(usize),
}

/// An edit script turning `a` into `b`, in order.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Equal(i, i)).collect();
    match myers(mid_a, mid_b, MAX_EDIT_LINES) {
        Some(middle) => ops.extend(middle.into_iter().map(|op| match op {
            Op::Equal(i, j) => Op::Equal(prefix + i, prefix + j),
            Op::Delete(i) => Op::Delete(prefix + i),
            Op::Insert(j) => Op::Insert(prefix + j),
        })),
        None => {
            ops.extend((0..mid_a.len()).map(|i| Op::Delete(prefix + i)));
            ops.extend((0..mid_b.len()).map(|j| Op::Insert(prefix + j)));
        }
    }
    let (tail_a, tail_b) = (a.len() - suffix, b.len() - suffix);
    ops.extend((0..suffix).map(|i| Op::Equal(tail_a + i, tail_b + i)));
    ops
}

/// A shortest edit script from `a` to `b` (Myers' greedy algorithm), or `None` if it
/// needs more than `max_d` insertions and deletions.
///
/// Round `d` records, per diagonal `k = x - y`, the furthest `x` a path of `d` edits
/// reaches; the path is then walked back through the rounds' records. Memory grows with
/// `max_d`², time with `(a.len() + b.len()) * max_d`.
fn myers(a: &[&str], b: &[&str], max_d: usize) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max_d = max_d.min(a.len() + b.len()) as isize;
    let offset = max_d + 1;
    let mut v = vec![0_isize; 2 * offset as usize + 1];
    // rounds[d] holds v[k] for k in -d..=d after round d.
    let mut rounds: Vec<Vec<isize>> = Vec::new();
    let at = |k: isize| (k + offset) as usize;
    let mut found = None;
    'rounds: for d in 0..=max_d {
        for k in (-d..=d).step_by(2) {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && x >= 0 && y >= 0 && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                rounds.push(v[at(-d)..=at(d)].to_vec());
                found = Some(d);
                break 'rounds;
            }
        }
        rounds.push(v[at(-d)..=at(d)].to_vec());
    }
    let found = found?;

    let mut ops = Vec::with_capacity(a.len() + b.len());
    let (mut x, mut y) = (n, m);
    for d in (1..=found).rev() {
        let prev = rounds.get(d as usize - 1)?;
        let get = |k: isize| prev.get((k + d - 1) as usize).copied();
        let k = x - y;
        let down = k == -d || (k != d && get(k - 1)? < get(k + 1)?);
        let prev_k = if down { k + 1 } else { k - 1 };
        let prev_x = get(prev_k)?;
        let prev_y = prev_x - prev_k;
        let (mid_x, mid_y) = if down {
            (prev_x, prev_y + 1)
        } else {
            (prev_x + 1, prev_y)
        };
        while x > mid_x && y > mid_y {
            x -= 1;
            y -= 1;
            ops.push(Op::Equal(
                usize::try_from(x).ok()?,
                usize::try_from(y).ok()?,
            ));
        }
        if down {
            ops.push(Op::Insert(usize::try_from(prev_y).ok()?));
        } else {
            ops.push(Op::Delete(usize::try_from(prev_x).ok()?));
        }
        (x, y) = (prev_x, prev_y);
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        ops.push(Op::Equal(
            usize::try_from(x).ok()?,
            usize::try_from(y).ok()?,
        ));
    }
    if x != 0 || y != 0 {
        return None;
    }
    ops.reverse();
    Some(ops)
}

/// The hunks of `ops` as `[start, end)` ranges of it: each change with up to
/// [`CONTEXT_LINES`] equal lines around it, changes closer than twice that merged.
fn hunks(ops: &[Op]) -> Vec<(usize, usize)> {
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Equal(..)))
        .map(|(i, _)| i)
        .collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for i in changes {
        let start = i.saturating_sub(CONTEXT_LINES);
        let end = (i + 1 + CONTEXT_LINES).min(ops.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    hunks
}

/// Appends one hunk: its `@@ -start,count +start,count @@` line and its lines.
fn render(out: &mut String, hunk: &[Op], a: &[&str], b: &[&str]) {
    use std::fmt::Write as _;
    // A hunk starts with context (or at the very start of both texts): its first op tells
    // how many lines of each side come before it.
    let (old_before, new_before) = match hunk.first() {
        Some(Op::Equal(i, j)) => (*i, *j),
        _ => (0, 0),
    };
    let old_count = hunk
        .iter()
        .filter(|op| !matches!(op, Op::Insert(_)))
        .count();
    let new_count = hunk
        .iter()
        .filter(|op| !matches!(op, Op::Delete(_)))
        .count();
    // As GNU diff: an empty side names the line it follows; one line omits the count.
    let range = |before: usize, count: usize| match count {
        0 => format!("{before},0"),
        1 => format!("{}", before + 1),
        _ => format!("{},{count}", before + 1),
    };
    let _ = writeln!(
        out,
        "@@ -{} +{} @@",
        range(old_before, old_count),
        range(new_before, new_count)
    );
    for op in hunk {
        let (sign, line) = match *op {
            Op::Equal(i, _) => (' ', a[i]),
            Op::Delete(i) => ('-', a[i]),
            Op::Insert(j) => ('+', b[j]),
        };
        let _ = writeln!(out, "{sign}{line}");
    }
}

/// `text` cut to at most `max` bytes at a line boundary, with a marker line saying how
/// much was cut.
fn bound(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    // Room for the marker: its numbers have at most 20 digits each.
    let room = max.saturating_sub(CUT_MARKER.len() + 64);
    let cut_at = text[..room.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let (kept, cut) = text.split_at(cut_at);
    let lines = cut.lines().count();
    format!(
        "{kept}{CUT_MARKER} {} more bytes in {lines} lines not shown\n",
        cut.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Length of a longest common subsequence, by dynamic programming (the reference).
    fn lcs(a: &[&str], b: &[&str]) -> usize {
        let mut row = vec![0; b.len() + 1];
        for x in a {
            let mut diag = 0;
            for (j, y) in b.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
                diag = up;
            }
        }
        row[b.len()]
    }

    /// Checks that `ops` turns `a` into `b` and returns its number of edits.
    fn replay(ops: &[Op], a: &[&str], b: &[&str]) -> usize {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        let mut edits = 0;
        for op in ops {
            match *op {
                Op::Equal(i, j) => {
                    assert_eq!(a[i], b[j], "{ops:?}");
                    old.push(i);
                    new.push(j);
                }
                Op::Delete(i) => {
                    old.push(i);
                    edits += 1;
                }
                Op::Insert(j) => {
                    new.push(j);
                    edits += 1;
                }
            }
        }
        assert_eq!(old, (0..a.len()).collect::<Vec<_>>(), "{ops:?}");
        assert_eq!(new, (0..b.len()).collect::<Vec<_>>(), "{ops:?}");
        edits
    }

    #[test]
    fn edit_scripts_are_shortest_on_random_texts() {
        let mut rng = fastrand_like(7);
        let alphabet = ["a", "b", "c", "d"];
        for _ in 0..2_000 {
            let a: Vec<&str> = (0..rng() % 12).map(|_| alphabet[rng() % 4]).collect();
            let b: Vec<&str> = (0..rng() % 12).map(|_| alphabet[rng() % 4]).collect();
            let ops = edit_script(&a, &b);
            let edits = replay(&ops, &a, &b);
            assert_eq!(edits, a.len() + b.len() - 2 * lcs(&a, &b), "{a:?} -> {b:?}");
        }
    }

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    fn fastrand_like(seed: u64) -> impl FnMut() -> usize {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 33) as usize
        }
    }

    #[test]
    fn too_many_edits_fall_back_to_replacing_the_middle() {
        let a: Vec<String> = (0..30).map(|i| format!("old {i}")).collect();
        let b: Vec<String> = (0..30).map(|i| format!("new {i}")).collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        assert_eq!(myers(&a, &b, 59), None, "60 edits are needed");
        assert!(myers(&a, &b, 60).is_some());
        // Beyond the budget the script is still correct.
        let mut long_a = vec!["head"];
        long_a.extend((0..MAX_EDIT_LINES).map(|_| "x"));
        long_a.push("tail");
        let mut long_b = vec!["head"];
        long_b.extend((0..MAX_EDIT_LINES).map(|_| "y"));
        long_b.push("tail");
        let ops = edit_script(&long_a, &long_b);
        assert_eq!(replay(&ops, &long_a, &long_b), 2 * MAX_EDIT_LINES);
    }

    #[test]
    fn equal_texts_have_no_diff_even_with_cosmetic_noise() {
        let a = "hostname leaf1\ninterface et1\n  mtu 9000\n";
        assert_eq!(diff(a, a, "old", "new"), None);
        assert_eq!(
            diff(
                a,
                "hostname leaf1\r\ninterface et1  \r\n  mtu 9000\t\r\n",
                "o",
                "n"
            ),
            None,
            "CRLF and trailing whitespace"
        );
        assert_eq!(
            diff(a, a.trim_end_matches('\n'), "o", "n"),
            None,
            "final newline"
        );
        assert!(
            diff(a, "hostname leaf1\ninterface et1\n mtu 9000\n", "o", "n").is_some(),
            "leading whitespace is significant"
        );
    }

    #[test]
    fn a_changed_line_reads_as_a_unified_diff() {
        let old: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 5\n", "line five\n");
        let d = diff(&old, &new, "show run\tT1", "show run\tT2").expect("a change");
        assert_eq!((d.added, d.removed), (1, 1));
        assert_eq!(
            d.text,
            "--- show run\tT1\n+++ show run\tT2\n\
             @@ -2,7 +2,7 @@\n line 2\n line 3\n line 4\n-line 5\n+line five\n line 6\n \
             line 7\n line 8\n"
        );
    }

    #[test]
    fn distant_changes_are_separate_hunks_and_near_ones_merge() {
        let old: Vec<String> = (1..=20).map(|i| format!("l{i}")).collect();
        let mut new = old.clone();
        new[1] = "L2".into();
        new[17] = "L18".into();
        let d = diff(&old.join("\n"), &new.join("\n"), "a", "b").expect("change");
        let headers: Vec<&str> = d.text.lines().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(headers, ["@@ -1,5 +1,5 @@", "@@ -15,6 +15,6 @@"]);
        // Changes 6 lines apart share their context: one hunk.
        let mut near = old.clone();
        near[4] = "L5".into();
        near[10] = "L11".into();
        let d = diff(&old.join("\n"), &near.join("\n"), "a", "b").expect("change");
        let headers: Vec<&str> = d.text.lines().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(headers, ["@@ -2,13 +2,13 @@"]);
    }

    #[test]
    fn empty_sides_and_pure_additions_follow_gnu_ranges() {
        let d = diff("", "a\nb\n", "o", "n").expect("added");
        assert_eq!(d.text, "--- o\n+++ n\n@@ -0,0 +1,2 @@\n+a\n+b\n");
        assert_eq!((d.added, d.removed), (2, 0));
        let d = diff("a\nb\n", "", "o", "n").expect("removed");
        assert_eq!(d.text, "--- o\n+++ n\n@@ -1,2 +0,0 @@\n-a\n-b\n");
        let d = diff("a\nb\nc\nd\ne\n", "a\nb\nc\nd\nX\ne\n", "o", "n").expect("inserted");
        assert_eq!(
            d.text,
            "--- o\n+++ n\n@@ -2,4 +2,5 @@\n b\n c\n d\n+X\n e\n"
        );
        let d = diff("a\n", "b\n", "o", "n").expect("replaced");
        assert_eq!(d.text, "--- o\n+++ n\n@@ -1 +1 @@\n-a\n+b\n");
    }

    #[test]
    fn long_diffs_are_cut_at_a_line_with_a_marker() {
        let old: String = (0..20_000).map(|i| format!("old line {i}\n")).collect();
        let new: String = (0..20_000).map(|i| format!("new line {i}\n")).collect();
        let d = diff(&old, &new, "o", "n").expect("change");
        assert!(d.text.len() <= MAX_DIFF_BYTES, "{}", d.text.len());
        assert_eq!((d.added, d.removed), (20_000, 20_000));
        let last = d.text.lines().last().expect("lines");
        assert!(last.starts_with(CUT_MARKER), "{last}");
        assert!(last.contains("more bytes in"), "{last}");
        let kept = d.text.lines().count() - 1;
        let full_lines = 3 + 40_000;
        assert!(
            last.contains(&format!("in {} lines", full_lines - kept)),
            "{last}"
        );
        assert!(d.text.ends_with('\n'));
        // Deterministic.
        assert_eq!(diff(&old, &new, "o", "n"), Some(d));
    }

    fn output(command: &str, ts: TimestampNs, text: &str) -> CliOutput {
        CliOutput {
            device: DeviceKey::new("leaf1").expect("key"),
            command: command.into(),
            ts,
            output: text.into(),
            truncated: false,
            track_changes: true,
        }
    }

    #[test]
    fn plans_follow_the_stored_latest() {
        let first = output("show version", 10, "v1\n");
        assert_eq!(plan(None, &first), Plan::Replace(None));
        assert_eq!(
            plan(Some(&first), &output("show version", 9, "v2\n")),
            Plan::Ignore
        );
        assert_eq!(
            plan(Some(&first), &output("show version", 11, "v1\r\n")),
            Plan::Touch
        );
        let Plan::Replace(Some(change)) = plan(Some(&first), &output("show version", 12, "v2\n"))
        else {
            panic!("a change");
        };
        assert_eq!((change.ts, change.previous_ts), (12, 10));
        assert!(
            change.diff.starts_with(
                "--- show version\t1970-01-01T00:00:00.000000010Z\n\
                 +++ show version\t1970-01-01T00:00:00.000000012Z\n"
            ),
            "{}",
            change.diff
        );
    }

    fn snapshot(rows: Vec<SnapshotRow>) -> CliSnapshot {
        CliSnapshot {
            device: DeviceKey::new("leaf1").expect("key"),
            command: "show version".into(),
            template: "arista_eos_show_version.textfsm".into(),
            ts: 1,
            last_seen: 1,
            rows,
            truncated: false,
        }
    }

    fn row(value: serde_json::Value) -> SnapshotRow {
        match value {
            serde_json::Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn snapshots_compare_as_canonical_json() {
        let json = check_snapshot(&snapshot(vec![
            row(serde_json::json!({"B": "x\u{0}", "A": ["1", "2"]})),
            row(serde_json::json!({})),
        ]))
        .expect("storable");
        assert_eq!(json, "[{\"A\":[\"1\",\"2\"],\"B\":\"x\u{FFFD}\"},{}]");
        assert_eq!(stored_rows(&json).expect("rows").len(), 2);
        assert_eq!(check_snapshot(&snapshot(Vec::new())), Ok("[]".to_owned()));
        assert!(matches!(stored_rows("{}"), Err(crate::Error::Corrupt(_))));
    }

    #[test]
    fn bound_rows_keeps_what_fits() {
        let small = vec![row(serde_json::json!({"A": "1"})); 3];
        assert_eq!(bound_rows(small.clone()), (small, false));
        let many = vec![row(serde_json::json!({})); MAX_SNAPSHOT_ROWS + 5];
        let (kept, cut) = bound_rows(many);
        assert_eq!((kept.len(), cut), (MAX_SNAPSHOT_ROWS, true));
        // Rows of 1,000 bytes of JSON: exactly as many as fit, commas and brackets counted.
        let wide = row(serde_json::json!({"A": "x".repeat(1000 - 8)}));
        assert_eq!(
            serde_json::Value::Object(wide.clone()).to_string().len(),
            1000
        );
        let (kept, cut) = bound_rows(vec![wide; 2000]);
        assert!(cut);
        let json = check_snapshot(&snapshot(kept.clone())).expect("fits");
        assert!(json.len() <= MAX_SNAPSHOT_BYTES);
        assert!(
            json.len() + 1001 > MAX_SNAPSHOT_BYTES,
            "one more row would not fit"
        );
        assert_eq!(kept.len(), (MAX_SNAPSHOT_BYTES - 2 + 1) / 1001);
    }

    #[test]
    fn snapshot_plans_follow_the_latest() {
        assert_eq!(plan_snapshot(None, 5), SnapshotOutcome::First);
        assert_eq!(plan_snapshot(Some((5, true)), 4), SnapshotOutcome::Late);
        assert_eq!(plan_snapshot(Some((5, false)), 4), SnapshotOutcome::Late);
        assert_eq!(
            plan_snapshot(Some((5, true)), 5),
            SnapshotOutcome::Unchanged
        );
        assert_eq!(plan_snapshot(Some((5, false)), 5), SnapshotOutcome::Changed);
    }

    #[test]
    fn outputs_and_limits_are_checked() {
        assert_eq!(check_output(&output("show version", 1, "x")), Ok(()));
        let big = "x".repeat(MAX_OUTPUT_BYTES + 1);
        assert_eq!(
            check_output(&output("show run", 1, &big)),
            Err(CliError::OutputTooLarge {
                command: "show run".into(),
                size: MAX_OUTPUT_BYTES + 1
            })
        );
        assert_eq!(
            check_output(&output("show run", 1, &big[1..])),
            Ok(()),
            "exactly the maximum"
        );
        for bad in ["", "show run\nreload", &"x".repeat(MAX_COMMAND_BYTES + 1)] {
            assert!(
                matches!(check_output(&output(bad, 1, "")), Err(CliError::Command(_))),
                "{bad:?}"
            );
        }
        assert_eq!(check_limit(0), Err(CliError::NoLimit));
        assert_eq!(check_limit(1), Ok(()));
        assert_eq!(check_limit(MAX_CHANGES_LIMIT), Ok(()));
        assert_eq!(
            check_limit(MAX_CHANGES_LIMIT + 1),
            Err(CliError::LimitTooLarge(MAX_CHANGES_LIMIT + 1))
        );
    }
}
