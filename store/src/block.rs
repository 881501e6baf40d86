//! Compressed blocks of one numeric series: the payload of a `bytea` column holding a few
//! hours of `(ts, value)` points, so that old samples cost a few bytes each, often less
//! than one, instead of a row each (`netpulse-bench blocks` measures it on simulated
//! series).
//!
//! Pure: [`encode`] turns points into bytes, [`decode`] turns them back exactly (values
//! bit for bit: NaN payloads, ±0.0, ±inf, subnormals), and [`summary`] reads the count and
//! the time span from the header alone, so a query skips blocks outside its range without
//! decoding them. Corrupt or truncated bytes are an error, never a panic; a block declares
//! at most [`MAX_POINTS`] points, so decoding never allocates more than 16 MiB.
//!
//! # Format, version 1
//!
//! ```text
//! u8      version (1), first so the format can evolve
//! varint  point count n, 1..=MAX_POINTS (LEB128)
//! i64 LE  first timestamp, ns since the epoch
//! varint  last timestamp - first timestamp (0 exactly when n = 1)
//! u8      value coding: 0 = XOR of floats, 1 + d = integers m standing for m / 10^d
//!         (d = 0..=9 decimal digits)
//! ---- one bit stream, most significant bit first, from here on
//! seq     n >= 2: the timestamps, as the integer sequence ts - first ts
//! values  XOR:      the first value's 64 bits, then one XOR code per value (below)
//!         integers: wide(zigzag(first m)), then for n >= 2 the integer sequence
//!                   m - first m
//! 0-7 zero bits to the byte boundary, and nothing after
//! ```
//!
//! `wide(x)` is a 7-bit length `L` (0..=64) then `x` in `L` bits. An integer sequence of `n`
//! integers `u_0 = 0, u_1, ..`, all arithmetic modulo 2^64, is:
//!
//! ```text
//! wide    scale g >= 1, dividing every u_i; what follows codes v_i = u_i / g
//! 2 bits  predictor p: 0 = zero, 1 = previous value, 2 = previous value + previous
//!         difference (delta of delta), 3 = the line i * param
//! wide    zigzag(bias b), subtracted from every residual (residual = v_i - prediction)
//! wide    p = 2: zigzag(v_1), which has no difference before it; p = 3: zigzag(slope)
//! 3 x 7   widths w0 <= w1 <= w2 (each <= 64)
//! codes   one per point from index 1 (p = 2: from index 2), z = zigzag(residual - b):
//!         w0 = w2: z in w0 bits, no prefix (w0 = w2 = 0: nothing at all)
//!         else:    "0" z in w0 bits | "10" z in w1 bits | "11" z in w2 bits
//! ```
//!
//! The XOR codes are Gorilla's with a 6-bit leading-zero count (no cap at 31): `0` for the
//! same bits as the previous value, `10` then the meaningful bits inside the previous
//! window, `11` then 6 bits of leading zeros, 6 bits of length - 1 and the bits.
//!
//! # Why this shape
//!
//! - **The encoder sees the whole block, so the block carries its own parameters**, chosen
//!   by trying them (a regular, constant 720-point block is 35 bytes in all, 0.05 bytes
//!   per point) instead of fixed buckets tuned to one kind of data.
//! - **Nanosecond timestamps.** Gorilla's delta-of-delta buckets (0, 7, 9, 12, 32 bits)
//!   assume seconds: in nanoseconds, 10 s samples with a few ms of jitter have
//!   delta-of-deltas of ±10^6-10^7 and would all land in the 32-bit bucket, plus a 4-bit
//!   prefix. Here the scale (gcd of the deltas) removes the precision the clock does not
//!   have: timestamps floored to the microsecond (PostgreSQL) are coded in µs, device
//!   timestamps on the millisecond in ms, and a perfectly regular series becomes
//!   `0, 1, 2, ..` whose residuals are all zero and take no bits at all.
//! - **Predictor and bias.** Samples scheduled on a fixed grid with jitter `j` deviate
//!   from the line `i * D` by `j_i` (minus the bias, the median); their first
//!   differences minus `D` are `j_i - j_(i-1)`, twice the variance, and their
//!   delta-of-deltas six times: the line is ~0.9 bit cheaper per point on µs-floored
//!   timestamps with 3 ms of jitter (its slope is a least-squares fit), but a missed
//!   sample shifts every later point off it, where differences see one outlier. A sampler
//!   that schedules from its last sample wants differences; a counter whose rate moves
//!   slowly wants delta-of-delta; a status or a gauge wants zero or differences. The
//!   encoder computes all four and keeps the cheapest.
//! - **Widths.** Three widths, `w0 <= w1 <= w2`, picked by exhaustive search over the
//!   histogram of residual bit lengths (O(65^2) per predictor), fit the prefix code to the
//!   block's actual spread: the common case in a 1-bit prefix, outliers (a gap, a reset)
//!   in the 2-bit ones, so one gap does not widen every code. Timestamp deltas up to
//!   2^64 - 1 (`i64::MIN` to `i64::MAX`) fall into a 64-bit width.
//! - **Integer values.** Interface counters are integers stored as `f64`; consecutive
//!   XORs of such floats pay for every low mantissa bit the increment touches, plus 2-14
//!   bits of code, and cannot use that the rate is steady: on a 480 Mbit/s counter
//!   sampled every 10 s they take 4.9 bytes per point where delta-of-delta integers take
//!   3.4 (see the tests).
//!   When every value of the block is an integer within ±2^53 that round-trips bit for bit
//!   (so not `-0.0`), the block is also coded as an integer sequence (the scale catches
//!   values in multiples, like memory in 4 KiB pages) and the smaller coding is kept.
//! - **Decimals.** Gauges reported with a few decimal digits (45.3 °C, -2.41 dBm) are
//!   worse still for XOR: 45.3 is no binary fraction, so consecutive values differ in ~45
//!   mantissa bits (5.8 bytes per point for a temperature in tenths, measured). When every
//!   value is `m / 10^d` exactly, bit for bit, for integers `m` within ±2^53 and some
//!   `d <= 9`, the smallest such `d` is used and `m` coded as above. Anything else
//!   (NaN, infinities, `-0.0`, integers beyond 2^53, arbitrary fractions) is XOR-coded.

use model::TimestampNs;

/// Format version written in the first byte of every block.
pub const VERSION: u8 = 1;

/// Most points one block may hold (2 h at 10 ms), so a decoder's allocation stays bounded
/// whatever a corrupt header declares: `MAX_POINTS` points are 16 MiB.
pub const MAX_POINTS: usize = 1 << 20;

/// Largest magnitude of a value coded as an integer: every integer up to it is exact in f64.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Most decimal digits of values coded as integers scaled by a power of ten.
pub const MAX_DECIMALS: u8 = 9;
/// `10^d` for every `d <= MAX_DECIMALS`, exact in f64.
const POWERS_OF_TEN: [f64; MAX_DECIMALS as usize + 1] =
    [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The byte after the header's span: how values are coded, XOR, or integers with
/// `byte - CODING_INTEGER` decimal digits.
const CODING_XOR: u8 = 0;
const CODING_INTEGER: u8 = 1;

/// Bits of the length of a [`BitWriter::write_wide`] number (0..=64).
const WIDE_LENGTH_BITS: u32 = 7;
/// Bits of one width of an integer sequence (0..=64).
const WIDTH_BITS: u32 = 7;
/// Bits of the predictor of an integer sequence.
const PREDICTOR_BITS: u32 = 2;

/// Why points cannot be encoded, or bytes cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// `encode` was given no point: a block always holds at least one.
    #[error("a block needs at least one point")]
    Empty,
    /// `encode` was given more than [`MAX_POINTS`] points.
    #[error("{0} points do not fit in one block (at most {MAX_POINTS})")]
    TooManyPoints(usize),
    /// Two points of the input share a timestamp.
    #[error("points {} and {index} have the same timestamp {ts} ns", index.saturating_sub(1))]
    DuplicateTimestamp {
        /// Index of the second of the two points.
        index: usize,
        /// Their timestamp.
        ts: TimestampNs,
    },
    /// The input is not sorted by timestamp.
    #[error("point {index} at {ts} ns comes after a point at {previous} ns: sort the points")]
    Unsorted {
        /// Index of the point out of order.
        index: usize,
        /// Its timestamp.
        ts: TimestampNs,
        /// The timestamp of the point before it.
        previous: TimestampNs,
    },
    /// The bytes start with a version this build does not read (a newer netpulse wrote
    /// them, or they are no block at all).
    #[error("block format version {0} is unknown (this netpulse reads version {VERSION})")]
    UnknownVersion(u8),
    /// The bytes end before the block does.
    #[error("block is truncated")]
    Truncated,
    /// The bytes are no valid block.
    #[error("block is corrupt: {0}")]
    Corrupt(&'static str),
}

/// How a block's values are coded (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueCoding {
    /// XOR of consecutive values' bits (Gorilla): any float.
    Xor,
    /// Integers `m` within ±2^53 standing for `m / 10^decimals`: whole numbers
    /// (`decimals` 0: counters, percentages) or numbers with few decimal digits
    /// (`45.3` as 453 with 1 decimal: temperatures, optical power).
    Integer {
        /// Decimal digits, at most [`MAX_DECIMALS`].
        decimals: u8,
    },
}

/// What a block's header says, read by [`summary`] without decoding the points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSummary {
    /// Number of points, at least 1.
    pub count: usize,
    /// Timestamp of the first point, ns since the epoch.
    pub first_ts: TimestampNs,
    /// Timestamp of the last point (`first_ts` when there is one point).
    pub last_ts: TimestampNs,
    /// How the values are coded.
    pub values: ValueCoding,
}

impl BlockSummary {
    /// Whether the block may hold points with `from <= ts <= to`.
    pub fn overlaps(&self, from: TimestampNs, to: TimestampNs) -> bool {
        self.first_ts <= to && from <= self.last_ts
    }
}

/// Encodes points sorted by strictly increasing timestamp (ns since the epoch) into one
/// block. Refuses an empty input, more than [`MAX_POINTS`] points, and timestamps that
/// repeat or go back.
pub fn encode(points: &[(TimestampNs, f64)]) -> Result<Vec<u8>, BlockError> {
    let (&(first, _), &(last, _)) = match (points.first(), points.last()) {
        (Some(first), Some(last)) => (first, last),
        _ => return Err(BlockError::Empty),
    };
    if points.len() > MAX_POINTS {
        return Err(BlockError::TooManyPoints(points.len()));
    }
    for (index, pair) in points.windows(2).enumerate() {
        let (previous, ts) = (pair[0].0, pair[1].0);
        if ts == previous {
            return Err(BlockError::DuplicateTimestamp {
                index: index + 1,
                ts,
            });
        }
        if ts < previous {
            return Err(BlockError::Unsorted {
                index: index + 1,
                ts,
                previous,
            });
        }
    }

    // Values first, each coding in its own stream, to keep the smaller.
    let xor = xor_stream(points);
    let (coding, values) = match integer_stream(points) {
        Some((decimals, integers)) if integers.len_bits() < xor.len_bits() => {
            (CODING_INTEGER + decimals, integers)
        }
        _ => (CODING_XOR, xor),
    };

    let mut out = Vec::with_capacity(24 + values.len_bits().div_ceil(8) + 2 * points.len());
    out.push(VERSION);
    push_varint(&mut out, points.len() as u64);
    out.extend_from_slice(&first.to_le_bytes());
    // Strictly increasing: last - first is in [0, 2^64) and exact in u64.
    push_varint(&mut out, last.wrapping_sub(first) as u64);
    out.push(coding);

    let mut bits = BitWriter::after(out);
    if points.len() >= 2 {
        let offsets: Vec<u64> = points
            .iter()
            .map(|&(ts, _)| ts.wrapping_sub(first) as u64)
            .collect();
        Sequence::plan(&offsets, false).write(&mut bits);
    }
    bits.append(&values);
    Ok(bits.finish())
}

/// Decodes a block written by [`encode`]: the same points, values bit for bit.
pub fn decode(bytes: &[u8]) -> Result<Vec<(TimestampNs, f64)>, BlockError> {
    let (head, body) = header(bytes)?;
    let mut bits = BitReader::new(body);
    // Every point past the first two costs at least one bit unless all residuals are
    // zero-width; the vector grows beyond this only for such (regular, constant) blocks.
    let mut points = Vec::with_capacity(head.count.min(body.len() * 8 + 2));
    points.push((head.first_ts, 0.0));
    if head.count >= 2 {
        let mut previous = head.first_ts;
        read_sequence(&mut bits, head.count, |_, offset| {
            let ts = head.first_ts.wrapping_add(offset as i64);
            if ts <= previous {
                return Err(BlockError::Corrupt("timestamps do not increase"));
            }
            previous = ts;
            points.push((ts, 0.0));
            Ok(())
        })?;
        if previous != head.last_ts {
            return Err(BlockError::Corrupt(
                "last timestamp differs from the header's",
            ));
        }
    }
    match head.values {
        ValueCoding::Xor => read_xor(&mut bits, &mut points)?,
        ValueCoding::Integer { decimals } => read_integers(&mut bits, decimals, &mut points)?,
    }
    bits.finish()?;
    Ok(points)
}

/// Reads the header of a block: count, first and last timestamps, value coding. Reads a
/// few bytes only; the rest of the block is not checked (see [`decode`]).
pub fn summary(bytes: &[u8]) -> Result<BlockSummary, BlockError> {
    header(bytes).map(|(head, _)| head)
}

/// The header and the bit stream after it.
fn header(bytes: &[u8]) -> Result<(BlockSummary, &[u8]), BlockError> {
    let version = *bytes.first().ok_or(BlockError::Truncated)?;
    if version != VERSION {
        return Err(BlockError::UnknownVersion(version));
    }
    let mut pos = 1;
    let count = read_varint(bytes, &mut pos)?;
    if count == 0 {
        return Err(BlockError::Corrupt("no point"));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= MAX_POINTS)
        .ok_or(BlockError::Corrupt("more points than a block may hold"))?;
    let first: [u8; 8] = bytes
        .get(pos..pos + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or(BlockError::Truncated)?;
    pos += 8;
    let first_ts = i64::from_le_bytes(first);
    let span = read_varint(bytes, &mut pos)?;
    let last_ts = first_ts
        .checked_add_unsigned(span)
        .ok_or(BlockError::Corrupt("last timestamp beyond i64"))?;
    // Strictly increasing timestamps: n points span at least n - 1 ns.
    if (count == 1) != (span == 0) || span < count as u64 - 1 {
        return Err(BlockError::Corrupt(
            "time span does not fit the point count",
        ));
    }
    let values = match bytes.get(pos) {
        None => return Err(BlockError::Truncated),
        Some(&CODING_XOR) => ValueCoding::Xor,
        Some(&byte) if (CODING_INTEGER..=CODING_INTEGER + MAX_DECIMALS).contains(&byte) => {
            ValueCoding::Integer {
                decimals: byte - CODING_INTEGER,
            }
        }
        Some(_) => return Err(BlockError::Corrupt("unknown value coding")),
    };
    let summary = BlockSummary {
        count,
        first_ts,
        last_ts,
        values,
    };
    Ok((summary, &bytes[pos + 1..]))
}

// ---- Integer sequences ----------------------------------------------------------------

/// The integer coding of a block's values with the fewest decimals that represent every
/// value exactly, `None` if none does (see [`scaled`]).
fn integer_stream(points: &[(TimestampNs, f64)]) -> Option<(u8, BitWriter)> {
    let (decimals, integers) = (0..=MAX_DECIMALS).find_map(|decimals| {
        let integers: Option<Vec<i64>> = points.iter().map(|&(_, v)| scaled(v, decimals)).collect();
        integers.map(|i| (decimals, i))
    })?;
    let first = *integers.first()?;
    let mut bits = BitWriter::default();
    bits.write_wide(zigzag(first));
    if integers.len() >= 2 {
        // |m - first| <= 2^54: exact in i64.
        let offsets: Vec<u64> = integers.iter().map(|&m| (m - first) as u64).collect();
        Sequence::plan(&offsets, true).write(&mut bits);
    }
    Some((decimals, bits))
}

/// The integer `m` within ±2^53 such that `m / 10^decimals` (as [`unscaled`] computes it)
/// has the bits of `v`, if there is one. Never for NaN, infinities or `-0.0`.
fn scaled(v: f64, decimals: u8) -> Option<i64> {
    let m = (v * POWERS_OF_TEN[usize::from(decimals)]).round() as i64;
    (m.unsigned_abs() <= MAX_EXACT_INTEGER && unscaled(m, decimals).to_bits() == v.to_bits())
        .then_some(m)
}

/// `m / 10^decimals`: exact for `decimals` 0, correctly rounded otherwise (IEEE division
/// by an exact power of ten), so the encoder's check holds for the decoder too.
fn unscaled(m: i64, decimals: u8) -> f64 {
    m as f64 / POWERS_OF_TEN[usize::from(decimals)]
}

/// What the residuals of an integer sequence are the error of (`u` here is the sequence
/// already divided by its scale; `u_0 = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Predictor {
    /// `u_i` itself (status codes, gauges around a level).
    Zero,
    /// The previous value: residuals are first differences (gauges that wander, jittered
    /// timestamps whose next sample is scheduled from the last one).
    Delta,
    /// The previous value plus the previous difference (counters with a slowly moving
    /// rate, drifting samplers); `param` is `u_1`, which has no difference before it.
    DeltaOfDelta,
    /// The line `i * param` (timestamps scheduled on a fixed grid with jitter: residuals
    /// are the jitter itself).
    Line,
}

impl Predictor {
    const ALL: [Self; 4] = [Self::Zero, Self::Delta, Self::DeltaOfDelta, Self::Line];

    fn code(self) -> u64 {
        match self {
            Self::Zero => 0,
            Self::Delta => 1,
            Self::DeltaOfDelta => 2,
            Self::Line => 3,
        }
    }

    fn of(code: u64) -> Self {
        match code & 3 {
            0 => Self::Zero,
            1 => Self::Delta,
            2 => Self::DeltaOfDelta,
            _ => Self::Line,
        }
    }

    /// Whether a parameter follows the bias.
    fn has_param(self) -> bool {
        matches!(self, Self::DeltaOfDelta | Self::Line)
    }

    /// The residuals of `u` (modulo 2^64, as signed), from index 1 (index 2 for
    /// [`Predictor::DeltaOfDelta`], whose index 1 is its parameter).
    fn residuals(self, u: &[u64], param: u64, out: &mut Vec<i64>) {
        match self {
            Self::Zero => out.extend(u.iter().skip(1).map(|&x| x as i64)),
            Self::Delta => out.extend(u.windows(2).map(|w| w[1].wrapping_sub(w[0]) as i64)),
            Self::DeltaOfDelta => out.extend(u.windows(3).map(|w| {
                w[2].wrapping_sub(w[1])
                    .wrapping_sub(w[1].wrapping_sub(w[0])) as i64
            })),
            Self::Line => out.extend(
                (1u64..)
                    .zip(u.iter().skip(1))
                    .map(|(i, &x)| x.wrapping_sub(param.wrapping_mul(i)) as i64),
            ),
        }
    }
}

/// The cheapest coding found for one integer sequence, with its residuals.
#[derive(Debug)]
struct Sequence {
    scale: u64,
    predictor: Predictor,
    bias: i64,
    /// `u_1` for [`Predictor::DeltaOfDelta`], the slope for [`Predictor::Line`].
    param: u64,
    widths: Widths,
    /// `zigzag(residual - bias)`, in order.
    codes: Vec<u64>,
}

impl Sequence {
    /// Plans the coding of `offsets` (`offsets[0] == 0`, at least two of them), unsigned
    /// offsets from the first (timestamps) or signed ones (`signed`, values).
    fn plan(offsets: &[u64], signed: bool) -> Self {
        let magnitude = |o: u64| if signed { (o as i64).unsigned_abs() } else { o };
        let scale = offsets.iter().fold(0, |g, &o| gcd(g, magnitude(o))).max(1);
        let scaled: Vec<u64> = if scale == 1 {
            offsets.to_vec()
        } else if signed {
            // scale <= 2^54 here: exact in i64.
            offsets
                .iter()
                .map(|&o| ((o as i64) / scale as i64) as u64)
                .collect()
        } else {
            offsets.iter().map(|&o| o / scale).collect()
        };
        let mut residuals = Vec::with_capacity(scaled.len());
        let mut sorted = Vec::with_capacity(scaled.len());
        let slope = slope(&scaled);
        let candidate = |predictor: Predictor, residuals: &mut Vec<i64>, sorted: &mut Vec<i64>| {
            let param = match predictor {
                Predictor::DeltaOfDelta => scaled.get(1).copied().unwrap_or(0),
                Predictor::Line => slope,
                Predictor::Zero | Predictor::Delta => 0,
            };
            residuals.clear();
            predictor.residuals(&scaled, param, residuals);
            sorted.clear();
            sorted.extend_from_slice(residuals);
            let bias = median(sorted);
            let mut histogram = [0u64; 65];
            for &r in residuals.iter() {
                histogram[bit_length(zigzag(r.wrapping_sub(bias))) as usize] += 1;
            }
            let (widths, code_bits) = Widths::cheapest(&histogram);
            let bits = code_bits
                + wide_bits(scale)
                + u64::from(PREDICTOR_BITS)
                + wide_bits(zigzag(bias))
                + if predictor.has_param() {
                    wide_bits(zigzag(param as i64))
                } else {
                    0
                }
                + 3 * u64::from(WIDTH_BITS);
            let plan = Self {
                scale,
                predictor,
                bias,
                param,
                widths,
                codes: Vec::new(),
            };
            (bits, plan)
        };
        let mut best = candidate(Predictor::Zero, &mut residuals, &mut sorted);
        for predictor in &Predictor::ALL[1..] {
            let next = candidate(*predictor, &mut residuals, &mut sorted);
            if next.0 < best.0 {
                best = next;
            }
        }
        let mut plan = best.1;
        residuals.clear();
        plan.predictor
            .residuals(&scaled, plan.param, &mut residuals);
        plan.codes = residuals
            .iter()
            .map(|&r| zigzag(r.wrapping_sub(plan.bias)))
            .collect();
        plan
    }

    fn write(&self, bits: &mut BitWriter) {
        bits.write_wide(self.scale);
        bits.write(self.predictor.code(), PREDICTOR_BITS);
        bits.write_wide(zigzag(self.bias));
        if self.predictor.has_param() {
            bits.write_wide(zigzag(self.param as i64));
        }
        let Widths([w0, w1, w2]) = self.widths;
        for w in [w0, w1, w2] {
            bits.write(u64::from(w), WIDTH_BITS);
        }
        if w0 == w2 {
            for &z in &self.codes {
                bits.write(z, w0);
            }
            return;
        }
        for &z in &self.codes {
            let n = bit_length(z);
            if n <= w0 {
                bits.write(0, 1);
                bits.write(z, w0);
            } else if n <= w1 {
                bits.write(0b10, 2);
                bits.write(z, w1);
            } else {
                bits.write(0b11, 2);
                bits.write(z, w2);
            }
        }
    }
}

/// The least-squares slope of `u` over its index, rounded: with jitter around a grid, far
/// closer to the grid's step than any one difference, and a line a few units too steep
/// would drift hundreds of units over a block. Any slope decodes; this one codes small.
fn slope(u: &[u64]) -> u64 {
    let n = u.len() as f64;
    let mean_i = (n - 1.0) / 2.0;
    // Offsets are below 2^63 but for blocks spanning half of i64 (their line is useless
    // anyway); signed values wrap to negative, as they should.
    let mean_u = u.iter().map(|&x| x as i64 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, &x) in u.iter().enumerate() {
        let di = i as f64 - mean_i;
        num += di * (x as i64 as f64 - mean_u);
        den += di * di;
    }
    // Saturating: a NaN or infinite slope (no spread) becomes 0 or the extreme.
    (num / den).round() as i64 as u64
}

/// The median of `values` (reordered), 0 for none.
fn median(values: &mut [i64]) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable(mid).1
}

/// The widths `w0 <= w1 <= w2` of the residual codes of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Widths([u32; 3]);

impl Widths {
    /// The widths coding the residuals counted in `histogram` (by bit length) in the
    /// fewest bits, and that number of bits.
    fn cheapest(histogram: &[u64; 65]) -> (Self, u64) {
        let widest = histogram.iter().rposition(|&c| c > 0).unwrap_or(0) as u32;
        let mut cumulative = [0u64; 65];
        let mut total = 0;
        for (c, &h) in cumulative.iter_mut().zip(histogram) {
            total += h;
            *c = total;
        }
        // No prefixes: every code `widest` bits (nothing at all when every residual is 0).
        let mut best = (Self([widest; 3]), total * u64::from(widest));
        let w2 = widest;
        let class2 = 2 + u64::from(w2);
        for w0 in 0..w2 {
            let class0 = cumulative[w0 as usize] * (1 + u64::from(w0));
            for w1 in w0..=w2 {
                let in1 = cumulative[w1 as usize] - cumulative[w0 as usize];
                let bits =
                    class0 + in1 * (2 + u64::from(w1)) + (total - cumulative[w1 as usize]) * class2;
                if bits < best.1 {
                    best = (Self([w0, w1, w2]), bits);
                }
            }
        }
        best
    }
}

/// Reads an integer sequence of `count` integers (the first, 0, implied) and hands each
/// of the others to `each` with its index, already multiplied by the scale.
fn read_sequence(
    bits: &mut BitReader<'_>,
    count: usize,
    mut each: impl FnMut(usize, u64) -> Result<(), BlockError>,
) -> Result<(), BlockError> {
    let scale = bits.read_wide()?;
    if scale == 0 {
        return Err(BlockError::Corrupt("zero scale"));
    }
    let predictor = Predictor::of(bits.read(PREDICTOR_BITS)?);
    let bias = unzigzag(bits.read_wide()?);
    let param = if predictor.has_param() {
        unzigzag(bits.read_wide()?) as u64
    } else {
        0
    };
    let mut widths = [0u32; 3];
    for w in &mut widths {
        *w = bits.read(WIDTH_BITS)? as u32;
    }
    let [w0, w1, w2] = widths;
    if w0 > w1 || w1 > w2 || w2 > 64 {
        return Err(BlockError::Corrupt("residual widths out of order"));
    }
    let (mut u, mut delta) = (0u64, 0u64);
    for index in 1..count {
        if predictor == Predictor::DeltaOfDelta && index == 1 {
            (u, delta) = (param, param);
            each(index, u.wrapping_mul(scale))?;
            continue;
        }
        let width = if w0 == w2 || bits.read(1)? == 0 {
            w0
        } else if bits.read(1)? == 0 {
            w1
        } else {
            w2
        };
        let residual = unzigzag(bits.read(width)?).wrapping_add(bias) as u64;
        u = match predictor {
            Predictor::Zero => residual,
            Predictor::Delta => u.wrapping_add(residual),
            Predictor::DeltaOfDelta => {
                delta = delta.wrapping_add(residual);
                u.wrapping_add(delta)
            }
            Predictor::Line => param.wrapping_mul(index as u64).wrapping_add(residual),
        };
        each(index, u.wrapping_mul(scale))?;
    }
    Ok(())
}

/// Reads integer-coded values with `decimals` digits (at most [`MAX_DECIMALS`]) into
/// `points` (timestamps already there).
fn read_integers(
    bits: &mut BitReader<'_>,
    decimals: u8,
    points: &mut [(TimestampNs, f64)],
) -> Result<(), BlockError> {
    let in_range = |m: i64| {
        (m.unsigned_abs() <= MAX_EXACT_INTEGER)
            .then(|| unscaled(m, decimals))
            .ok_or(BlockError::Corrupt("integer value beyond 2^53"))
    };
    let first = unzigzag(bits.read_wide()?);
    let Some((head, rest)) = points.split_first_mut() else {
        return Ok(());
    };
    head.1 = in_range(first)?;
    if rest.is_empty() {
        return Ok(());
    }
    read_sequence(bits, rest.len() + 1, |index, offset| {
        rest[index - 1].1 = in_range(first.wrapping_add(offset as i64))?;
        Ok(())
    })
}

// ---- XOR floats -----------------------------------------------------------------------

/// Bits of the leading-zero count of a new XOR window.
const XOR_LEADING_BITS: u32 = 6;
/// Bits of the length - 1 of a new XOR window.
const XOR_LENGTH_BITS: u32 = 6;

/// The XOR coding of a block's values.
fn xor_stream(points: &[(TimestampNs, f64)]) -> BitWriter {
    let mut bits = BitWriter::default();
    let Some((&(_, first), rest)) = points.split_first() else {
        return bits;
    };
    let mut previous = first.to_bits();
    bits.write(previous, 64);
    // (leading zeros, trailing zeros) of the window the last new-window code opened.
    let mut window: Option<(u32, u32)> = None;
    for &(_, v) in rest {
        let v = v.to_bits();
        let x = v ^ previous;
        previous = v;
        if x == 0 {
            bits.write(0, 1);
            continue;
        }
        let (leading, trailing) = (x.leading_zeros(), x.trailing_zeros());
        let length = 64 - leading - trailing;
        // Reuse the window when the value fits and a new one would not be cheaper.
        match window {
            Some((wl, wt))
                if leading >= wl
                    && trailing >= wt
                    && 64 - wl - wt <= length + XOR_LEADING_BITS + XOR_LENGTH_BITS =>
            {
                bits.write(0b10, 2);
                bits.write(x >> wt, 64 - wl - wt);
            }
            _ => {
                bits.write(0b11, 2);
                bits.write(u64::from(leading), XOR_LEADING_BITS);
                bits.write(u64::from(length - 1), XOR_LENGTH_BITS);
                bits.write(x >> trailing, length);
                window = Some((leading, trailing));
            }
        }
    }
    bits
}

/// Reads XOR-coded values into `points` (timestamps already there).
fn read_xor(bits: &mut BitReader<'_>, points: &mut [(TimestampNs, f64)]) -> Result<(), BlockError> {
    let Some((head, rest)) = points.split_first_mut() else {
        return Ok(());
    };
    let mut previous = bits.read(64)?;
    head.1 = f64::from_bits(previous);
    let mut window: Option<(u32, u32)> = None;
    for point in rest {
        if bits.read(1)? == 1 {
            let x = if bits.read(1)? == 0 {
                let (leading, trailing) =
                    window.ok_or(BlockError::Corrupt("XOR window reused before one was set"))?;
                bits.read(64 - leading - trailing)? << trailing
            } else {
                let leading = bits.read(XOR_LEADING_BITS)? as u32;
                let length = bits.read(XOR_LENGTH_BITS)? as u32 + 1;
                if leading + length > 64 {
                    return Err(BlockError::Corrupt("XOR window wider than 64 bits"));
                }
                let trailing = 64 - leading - length;
                window = Some((leading, trailing));
                bits.read(length)? << trailing
            };
            previous ^= x;
        }
        point.1 = f64::from_bits(previous);
    }
    Ok(())
}

// ---- Bits and numbers -----------------------------------------------------------------

/// Appends bits, most significant first, to a byte vector.
#[derive(Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// The low `pending` bits are not yet in `bytes`.
    acc: u64,
    pending: u32,
}

impl BitWriter {
    /// A writer appending to `bytes` (byte-aligned).
    fn after(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            acc: 0,
            pending: 0,
        }
    }

    /// Appends the low `width` bits of `value` (`width <= 64`).
    fn write(&mut self, value: u64, width: u32) {
        if width > 32 {
            self.write(value >> 32, width - 32);
            self.write(value & 0xffff_ffff, 32);
            return;
        }
        // pending < 8 and width <= 32: the accumulator never overflows.
        let value = value & ((1u64 << width) - 1);
        self.acc = (self.acc << width) | value;
        self.pending += width;
        while self.pending >= 8 {
            self.pending -= 8;
            self.bytes.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u64 << self.pending) - 1;
    }

    /// Appends `value` as a 7-bit length and its significant bits.
    fn write_wide(&mut self, value: u64) {
        let length = bit_length(value);
        self.write(u64::from(length), WIDE_LENGTH_BITS);
        self.write(value, length);
    }

    /// Appends every bit written to `other`.
    fn append(&mut self, other: &Self) {
        for &byte in &other.bytes {
            self.write(u64::from(byte), 8);
        }
        self.write(other.acc, other.pending);
    }

    fn len_bits(&self) -> usize {
        self.bytes.len() * 8 + self.pending as usize
    }

    /// The bytes, the last one padded with zero bits.
    fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.bytes.push((self.acc << (8 - self.pending)) as u8);
        }
        self.bytes
    }
}

/// Reads bits, most significant first, from a byte slice.
#[derive(Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// The next `width` bits (`width <= 64`).
    fn read(&mut self, width: u32) -> Result<u64, BlockError> {
        if width == 0 {
            return Ok(0);
        }
        if width > 56 {
            let high = self.read(width - 32)?;
            return Ok(high << 32 | self.read(32)?);
        }
        let end = self.pos + width as usize;
        if end > self.bytes.len() * 8 {
            return Err(BlockError::Truncated);
        }
        let start = self.pos / 8;
        let mut window = [0u8; 8];
        let available = &self.bytes[start..self.bytes.len().min(start + 8)];
        window[..available.len()].copy_from_slice(available);
        // At most 7 bits of offset and 56 of width: within the 64-bit window.
        let offset = (self.pos % 8) as u32;
        self.pos = end;
        Ok((u64::from_be_bytes(window) << offset) >> (64 - width))
    }

    /// A number written by [`BitWriter::write_wide`].
    fn read_wide(&mut self) -> Result<u64, BlockError> {
        let length = self.read(WIDE_LENGTH_BITS)? as u32;
        if length > 64 {
            return Err(BlockError::Corrupt("number wider than 64 bits"));
        }
        self.read(length)
    }

    /// Checks that only zero padding of the last byte is left.
    fn finish(self) -> Result<(), BlockError> {
        let padding = self.bytes.len() * 8 - self.pos;
        let last = self.bytes.last().copied().unwrap_or(0);
        if padding >= 8 || (padding > 0 && last & ((1u8 << padding) - 1) != 0) {
            return Err(BlockError::Corrupt("data after the last point"));
        }
        Ok(())
    }
}

pub(crate) fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, BlockError> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *bytes.get(*pos).ok_or(BlockError::Truncated)?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return Err(BlockError::Corrupt("varint beyond 64 bits"));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BlockError::Corrupt("varint beyond 64 bits"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Bits needed to write `v` (0 for 0).
fn bit_length(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Bits of `v` written by [`BitWriter::write_wide`].
fn wide_bits(v: u64) -> u64 {
    u64::from(WIDE_LENGTH_BITS + bit_length(v))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    const S: i64 = 1_000_000_000;
    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600 * S;
    const TWO_53: f64 = 9_007_199_254_740_992.0;

    /// splitmix64: deterministic noise without a dependency.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Encodes, decodes, compares bit for bit, checks the summary; returns the block.
    fn round_trip(points: &[(i64, f64)]) -> Vec<u8> {
        let bytes = encode(points).expect("encodes");
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.len(), points.len());
        for (i, (a, b)) in points.iter().zip(&back).enumerate() {
            assert_eq!(
                (a.0, a.1.to_bits()),
                (b.0, b.1.to_bits()),
                "point {i}: {a:?} came back as {b:?}"
            );
        }
        let s = summary(&bytes).expect("summary");
        assert_eq!(
            (s.count, s.first_ts, s.last_ts),
            (points.len(), points[0].0, points[points.len() - 1].0)
        );
        bytes
    }

    fn coding(bytes: &[u8]) -> ValueCoding {
        summary(bytes).expect("summary").values
    }

    /// Timestamps every `interval` from T0, `jitter` ns late at most, floored to `floor` ns.
    fn timestamps(noise: &mut Noise, n: usize, interval: i64, jitter: u64, floor: i64) -> Vec<i64> {
        (0..n as i64)
            .map(|i| {
                let ts = T0 + i * interval + noise.below(jitter.max(1)) as i64;
                ts - ts.rem_euclid(floor)
            })
            .collect()
    }

    /// An interface octet counter like the simulator's: a base rate (bytes/s) swinging with
    /// a 600 s wave and two faster harmonics, integrated in closed form, read at `ts`.
    fn octets(noise: &mut Noise, ts: &[i64], base: f64) -> Vec<(i64, f64)> {
        let waves: Vec<(f64, f64, f64)> = [(0.35, 1.0), (0.05, 13.0), (0.04, 71.0)]
            .iter()
            .map(|&(a, h)| (a, TAU * h / 600.0, noise.unit() * TAU))
            .collect();
        let uptime = 86_400.0 * (1.0 + 10.0 * noise.unit());
        ts.iter()
            .map(|&t| {
                let t_s = (t - T0) as f64 / S as f64;
                let mut x = uptime + t_s;
                for &(a, w, p) in &waves {
                    x += a / w * (p.cos() - (w * t_s + p).cos());
                }
                (t, (base * x).floor())
            })
            .collect()
    }

    #[test]
    fn edge_cases_round_trip() {
        let cases: Vec<Vec<(i64, f64)>> = vec![
            vec![(T0, 1.5)],
            vec![(0, 0.0)],
            vec![(-5, -7.0)],
            vec![(i64::MIN, f64::NAN)],
            vec![(i64::MAX, 3.0)],
            vec![(T0, 1.0), (T0 + 1, 2.0)],
            vec![(T0, 0.25), (T0 + 10 * S, 0.25)],
            // Huge gaps between regular runs.
            (0..50)
                .map(|i| {
                    (
                        T0 + i * 10 * S + if i > 20 { 86_400 * S } else { 0 },
                        i as f64,
                    )
                })
                .collect(),
            // Negative timestamps, crossing the epoch.
            (-30..30)
                .map(|i| (i * 7 * S + i * i, (i * 3) as f64))
                .collect(),
            // Deltas of almost 2^64: the 64-bit width.
            vec![
                (i64::MIN, 1.0),
                (i64::MIN + 1, 2.0),
                (i64::MAX - 1, 3.0),
                (i64::MAX, 4.0),
            ],
            vec![(i64::MIN, 0.5), (i64::MAX, -0.5)],
            vec![(i64::MIN, 1.0), (0, 2.0), (1, 3.0), (i64::MAX, 4.0)],
            // One nanosecond apart, then far apart, then one again.
            vec![
                (0, 0.0),
                (1, 0.0),
                (i64::MAX / 2, 0.0),
                (i64::MAX / 2 + 1, 0.0),
            ],
        ];
        for points in cases {
            round_trip(&points);
        }
    }

    #[test]
    fn special_floats_round_trip_bit_for_bit() {
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN
            f64::from_bits(0xfff8_dead_beef_cafe), // NaN with a payload
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(1), // smallest subnormal
            -f64::from_bits(0x000f_ffff_ffff_ffff),
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1.0,
        ];
        let points: Vec<(i64, f64)> = specials
            .iter()
            .enumerate()
            .map(|(i, &v)| (T0 + i as i64 * 10 * S, v))
            .collect();
        assert_eq!(coding(&round_trip(&points)), ValueCoding::Xor);
        // Each alone, and each repeated (the "same bits" code).
        for &v in &specials {
            round_trip(&[(T0, v)]);
            round_trip(&[(T0, v), (T0 + S, v), (T0 + 2 * S, 1.0), (T0 + 3 * S, v)]);
        }
    }

    #[test]
    fn integers_within_2_53_are_coded_as_integers() {
        let cases: [&[f64]; 4] = [
            &[0.0, 1.0, 2.0, 1.0, 2.0],
            &[-1.0, -1.0, -1.0],
            &[4096.0 * 3.0, 4096.0 * 5.0, 4096.0 * 2.0, 4096.0 * 7.0],
            &[1e15, 1e15 + 6e9, 1e15 + 1.3e10, 1e15 + 1.9e10],
        ];
        for values in cases {
            let points: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (T0 + i as i64 * 10 * S, v))
                .collect();
            assert_eq!(
                coding(&round_trip(&points)),
                ValueCoding::Integer { decimals: 0 },
                "{values:?}"
            );
        }
        // One point alone, too.
        assert_eq!(
            coding(&round_trip(&[(T0, 42.0)])),
            ValueCoding::Integer { decimals: 0 }
        );
        // ±2^53 are in range (XOR may still be smaller for so few mantissa bits).
        for v in [TWO_53, -TWO_53] {
            assert_eq!(scaled(v, 0), Some(v as i64));
        }
        let edges = [
            (T0, TWO_53),
            (T0 + 1, -TWO_53),
            (T0 + 2, TWO_53),
            (T0 + 3, 0.0),
        ];
        round_trip(&edges);
        assert!(integer_stream(&edges).is_some());
    }

    #[test]
    fn values_with_few_decimals_are_coded_as_scaled_integers() {
        let cases: [(&[f64], u8); 6] = [
            (&[45.3, 45.4, 45.2, 45.3], 1),
            (&[1.0, 2.5, 3.0], 1),
            (&[-2.41, -2.4, -2.43], 2),
            (&[0.001, 0.002, 0.0], 3),
            (&[1.5, 1e-9], 9),
            (&[-0.5, 99_999.875], 3),
        ];
        for (values, decimals) in cases {
            let points: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (T0 + i as i64 * 10 * S, v))
                .collect();
            assert_eq!(
                coding(&round_trip(&points)),
                ValueCoding::Integer { decimals },
                "{values:?}"
            );
        }
        // Out of range once scaled: 2^53 / 10 < 1e15 < 2^53.
        assert_eq!(scaled(1e15 + 0.5, 1), None);
        assert_eq!(scaled(1e15, 1), None);
        assert_eq!(scaled(1e15, 0), Some(1_000_000_000_000_000));
    }

    #[test]
    fn values_that_are_no_exact_integer_force_xor() {
        let cases: [&[f64]; 10] = [
            // Beyond 2^53 (even integers there, exact in f64 but out of range).
            &[1.0, TWO_53 + 2.0, 3.0],
            &[1e6, 1e6 + 1.0, 2e16],
            &[-TWO_53 - 2.0, 0.0],
            &[1e300, 2.0],
            // -0.0 reads back as 0.0 through an integer.
            &[1.0, -0.0, 2.0],
            &[1.0, 1.0 / 3.0, 3.0],
            &[std::f64::consts::PI],
            &[0.1 + 0.2, 0.5],
            &[1e-10, 0.0],
            &[1.0, f64::NAN, 3.0],
        ];
        for values in cases {
            let points: Vec<(i64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (T0 + i as i64 * 10 * S, v))
                .collect();
            assert_eq!(coding(&round_trip(&points)), ValueCoding::Xor, "{values:?}");
        }
    }

    #[test]
    fn random_series_round_trip() {
        let mut noise = Noise(7);
        for case in 0..300 {
            let n = 1 + noise.below(400) as usize;
            let interval = [1, 1_000, S, 10 * S, 60 * S][case % 5];
            let jitter = [0, 1, 1_000, 3_000_000][noise.below(4) as usize];
            let floor = [1, 1_000, 1_000_000][noise.below(3) as usize];
            let mut ts = timestamps(&mut noise, n, interval + jitter as i64 + 1, jitter, floor);
            // Flooring may have merged neighbours: keep them strictly increasing.
            for i in 1..n {
                ts[i] = ts[i].max(ts[i - 1] + 1);
            }
            if noise.below(4) == 0 {
                // A few gaps.
                for t in ts.iter_mut().skip(n / 2) {
                    *t += 3_600 * S;
                }
            }
            let mut level = noise.below(1 << 40) as f64;
            let points: Vec<(i64, f64)> = ts
                .iter()
                .map(|&t| {
                    level += match case % 4 {
                        0 => noise.below(1_000_000) as f64,
                        1 => noise.unit() - 0.5,
                        2 => f64::from_bits(noise.next()) - level,
                        _ => noise.below(3) as f64 - 1.0,
                    };
                    (t, level)
                })
                .collect();
            round_trip(&points);
        }
    }

    #[test]
    fn unsorted_duplicate_and_empty_input_is_refused() {
        assert_eq!(encode(&[]), Err(BlockError::Empty));
        assert_eq!(
            encode(&[(T0, 1.0), (T0 + 1, 2.0), (T0 + 1, 3.0)]),
            Err(BlockError::DuplicateTimestamp {
                index: 2,
                ts: T0 + 1
            })
        );
        let err = encode(&[(T0, 1.0), (T0 - 1, 2.0)]).expect_err("unsorted");
        assert_eq!(
            err,
            BlockError::Unsorted {
                index: 1,
                ts: T0 - 1,
                previous: T0
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "point 1 at {} ns comes after a point at {T0} ns: sort the points",
                T0 - 1
            )
        );
        assert_eq!(
            BlockError::DuplicateTimestamp { index: 2, ts: 5 }.to_string(),
            "points 1 and 2 have the same timestamp 5 ns"
        );
        let too_many: Vec<(i64, f64)> = (0..=MAX_POINTS as i64).map(|i| (i, 0.0)).collect();
        assert_eq!(
            encode(&too_many),
            Err(BlockError::TooManyPoints(MAX_POINTS + 1))
        );
    }

    /// Blocks of every shape the corruption tests mangle.
    fn sample_blocks() -> Vec<Vec<u8>> {
        let mut noise = Noise(11);
        let ts = timestamps(&mut noise, 200, 10 * S, 3_000_000, 1_000);
        let regular: Vec<i64> = (0..200).map(|i| T0 + i * 10 * S).collect();
        vec![
            encode(&[(T0, 1.0)]).expect("one"),
            encode(&[(T0, 1.5)]).expect("one float"),
            encode(&[(T0, 1.0), (T0 + S, 2.0)]).expect("two"),
            encode(&octets(&mut noise, &ts, 6e7)).expect("counter"),
            encode(&regular.iter().map(|&t| (t, 0.0)).collect::<Vec<_>>()).expect("flat"),
            encode(&ts.iter().map(|&t| (t, noise.unit())).collect::<Vec<_>>()).expect("floats"),
            encode(&[(i64::MIN, f64::NAN), (0, -0.0), (i64::MAX, 2.0)]).expect("extremes"),
        ]
    }

    #[test]
    fn every_truncation_of_a_block_is_an_error() {
        for block in sample_blocks() {
            assert!(decode(&block).is_ok());
            for len in 0..block.len() {
                let err = decode(&block[..len]).expect_err("truncated block");
                assert!(
                    matches!(err, BlockError::Truncated | BlockError::Corrupt(_)),
                    "{len}/{}: {err:?}",
                    block.len()
                );
            }
            let mut longer = block.clone();
            longer.push(0);
            assert_eq!(
                decode(&longer),
                Err(BlockError::Corrupt("data after the last point"))
            );
        }
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(decode(&[]), Err(BlockError::Truncated));
        assert_eq!(summary(&[]), Err(BlockError::Truncated));
        let block = encode(&[(T0, 1.0), (T0 + S, 2.0)]).expect("block");
        let mut newer = block.clone();
        newer[0] = 2;
        assert_eq!(decode(&newer), Err(BlockError::UnknownVersion(2)));
        assert_eq!(
            BlockError::UnknownVersion(2).to_string(),
            "block format version 2 is unknown (this netpulse reads version 1)"
        );
        // A declared count beyond MAX_POINTS, or beyond what the span allows.
        let mut huge = vec![VERSION];
        push_varint(&mut huge, MAX_POINTS as u64 + 1);
        huge.extend_from_slice(&T0.to_le_bytes());
        push_varint(&mut huge, u64::MAX >> 1);
        huge.push(CODING_XOR);
        assert!(matches!(decode(&huge), Err(BlockError::Corrupt(_))));
        let mut dense = vec![VERSION];
        push_varint(&mut dense, 5);
        dense.extend_from_slice(&T0.to_le_bytes());
        push_varint(&mut dense, 3);
        dense.push(CODING_XOR);
        assert!(matches!(summary(&dense), Err(BlockError::Corrupt(_))));
        // Version, count (1 byte), first timestamp (8), span (1 byte), then the coding.
        let mut unknown = encode(&[(T0, 1.0), (T0 + 5, 2.5)]).expect("block");
        const CODING_AT: usize = 11;
        assert_eq!(unknown[CODING_AT], CODING_INTEGER + 1);
        for byte in [CODING_INTEGER + MAX_DECIMALS + 1, u8::MAX] {
            unknown[CODING_AT] = byte;
            assert_eq!(
                summary(&unknown),
                Err(BlockError::Corrupt("unknown value coding"))
            );
        }
    }

    /// A successful decode of arbitrary bytes still gives what a block promises.
    fn check_if_decoded(bytes: &[u8]) {
        let Ok(points) = decode(bytes) else {
            return;
        };
        let s = summary(bytes).expect("a decodable block has a header");
        assert_eq!(points.len(), s.count);
        assert!(points.len() <= MAX_POINTS);
        assert_eq!(points.first().map(|p| p.0), Some(s.first_ts));
        assert_eq!(points.last().map(|p| p.0), Some(s.last_ts));
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
        // What decodes encodes again to something that decodes the same.
        let again = decode(&encode(&points).expect("decoded points encode")).expect("decode");
        assert!(
            points
                .iter()
                .zip(&again)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
        );
    }

    #[test]
    fn random_and_mangled_bytes_never_panic() {
        let mut noise = Noise(2024);
        for _ in 0..20_000 {
            let len = noise.below(48) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
            // Mostly a valid version, so the bit stream is exercised too.
            if let Some(b) = bytes.first_mut()
                && noise.below(8) != 0
            {
                *b = VERSION;
            }
            check_if_decoded(&bytes);
        }
        let blocks = sample_blocks();
        for round in 0..20_000 {
            let mut bytes = blocks[round % blocks.len()].clone();
            for _ in 0..1 + noise.below(3) {
                let at = noise.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << noise.below(8);
            }
            check_if_decoded(&bytes);
        }
    }

    #[test]
    fn summaries_tell_which_blocks_a_range_needs() {
        let block = encode(&[(100, 1.0), (200, 2.0), (300, 3.0)]).expect("block");
        let s = summary(&block).expect("summary");
        assert_eq!(
            s,
            BlockSummary {
                count: 3,
                first_ts: 100,
                last_ts: 300,
                values: ValueCoding::Integer { decimals: 0 }
            }
        );
        assert!(s.overlaps(0, 100) && s.overlaps(300, 400) && s.overlaps(150, 160));
        assert!(!s.overlaps(0, 99) && !s.overlaps(301, 400));
    }

    #[test]
    fn a_two_hour_counter_block_stays_small() {
        // 720 points 10 s apart (2 h) of a 480 Mbit/s octet counter, read late by up to 3 ms
        // and floored to the microsecond as PostgreSQL keeps them; then the same on the
        // grid, a flat error counter both ways, and a temperature in tenths. Bounds are the
        // sizes measured when the format was written (4.93, 3.43, 1.55, 0.05 and 0.30
        // bytes/point), rounded up: growing past them is a regression of the format, not
        // noise (the data is seeded).
        let mut noise = Noise(1);
        let jittered = timestamps(&mut noise, 720, 10 * S, 3_000_000, 1_000);
        let grid = timestamps(&mut noise, 720, 10 * S, 0, 1);
        let per_point = |points: &[(i64, f64)]| round_trip(points).len() as f64 / 720.0;
        let counter = octets(&mut noise, &jittered, 6e7);
        let size = per_point(&counter);
        let per_value = |bits: &BitWriter| bits.len_bits() as f64 / 8.0 / 720.0;
        let xor = per_value(&xor_stream(&counter));
        let (decimals, integers) = integer_stream(&counter).expect("whole numbers");
        let integers = per_value(&integers);
        assert_eq!(decimals, 0);
        println!(
            "µs-jittered counter: {size:.3} bytes/point; values alone: integers {integers:.3}, \
             XOR {xor:.3}"
        );
        assert!(size < 5.0, "{size}");
        assert!(integers < 0.75 * xor, "integers {integers} vs XOR {xor}");
        assert_eq!(
            coding(&encode(&counter).expect("block")),
            ValueCoding::Integer { decimals: 0 }
        );

        let size = per_point(&octets(&mut noise, &grid, 6e7));
        println!("counter on the grid: {size:.3} bytes/point");
        assert!(size < 3.5, "{size}");

        let size = per_point(&jittered.iter().map(|&t| (t, 0.0)).collect::<Vec<_>>());
        println!("µs-jittered flat counter: {size:.3} bytes/point");
        assert!(size < 1.6, "{size}");

        let size = per_point(&grid.iter().map(|&t| (t, 17.0)).collect::<Vec<_>>());
        println!("flat counter on the grid: {size:.3} bytes/point");
        assert!(size < 0.06, "{size}");

        // A temperature in tenths of a degree, wandering slowly, on the grid.
        let mut tenths = 453i64;
        let temperature: Vec<(i64, f64)> = grid
            .iter()
            .map(|&t| {
                tenths += noise.below(3) as i64 - 1;
                (t, tenths as f64 / 10.0)
            })
            .collect();
        let size = per_point(&temperature);
        let xor = per_value(&xor_stream(&temperature));
        println!("temperature on the grid: {size:.3} bytes/point (values XOR-coded: {xor:.3})");
        assert!(size < 0.32, "{size}");
        assert_eq!(
            coding(&encode(&temperature).expect("block")),
            ValueCoding::Integer { decimals: 1 }
        );
    }
}
