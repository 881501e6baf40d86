//! The JSON API under `/api/v1`.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use chrono::{DateTime, SecondsFormat, Utc};
use model::{DeviceKey, Path, TimestampNs, Value};
use serde::{Deserialize, Serialize};
use store::{DeviceSummary, SeriesRate, SeriesSummary, TopRates};

use crate::AppState;
use crate::error::{Error, Result};
use crate::health::HealthJson;

/// Default span of a series query without `from`.
const DEFAULT_SPAN_NS: i64 = 3600 * 1_000_000_000;

/// Window of a rate ranking without `window`.
const DEFAULT_TOP_WINDOW: &str = "5m";

/// Longest window of a rate ranking: it reads every sample of the window.
const MAX_TOP_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Series in a rate ranking without `limit`.
const DEFAULT_TOP_LIMIT: usize = 10;

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(ts: TimestampNs) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A step as seconds with a unit, for echoing back (`60s`).
fn step_text(ns: i64) -> String {
    format!("{}s", ns as f64 / 1e9)
}

/// Parses a time parameter: RFC 3339, or an integer of nanoseconds since the epoch.
pub fn parse_time(name: &str, s: &str) -> Result<TimestampNs> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "{name}={s:?} is neither RFC 3339 (2026-01-02T03:04:05Z) nor nanoseconds since the epoch"
            ))
        })
}

/// Parses a device name from the URL, answering 404 for names that cannot exist.
pub fn device_key(name: &str) -> Result<DeviceKey> {
    DeviceKey::new(name).map_err(|_| Error::UnknownDevice(name.to_owned()))
}

/// A device in API answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceJson {
    name: String,
    address: String,
    state: &'static str,
    last_error: Option<String>,
    state_since: Option<String>,
    last_sample: Option<String>,
    series: i64,
    /// The collector's last health report, `null` until one is recorded.
    health: Option<HealthJson>,
}

impl From<&DeviceSummary> for DeviceJson {
    fn from(d: &DeviceSummary) -> Self {
        Self {
            name: d.name.to_string(),
            address: d.address.clone(),
            state: d.state.as_str(),
            last_error: d.last_error.clone(),
            state_since: d.state_since.map(rfc3339),
            last_sample: d.last_sample.map(rfc3339),
            series: d.series,
            health: HealthJson::from_stored(d.health.as_ref(), d.health_at),
        }
    }
}

/// A series with its latest value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesJson {
    path: String,
    last_ts: String,
    last_value: Value,
}

impl From<&SeriesSummary> for SeriesJson {
    fn from(s: &SeriesSummary) -> Self {
        Self {
            path: s.path.to_string(),
            last_ts: rfc3339(s.last_ts),
            last_value: s.last_value.clone(),
        }
    }
}

/// `GET /api/v1/devices`
pub async fn devices(State(state): State<AppState>) -> Result<Json<serde_json::Value>> {
    let devices = state.store.devices().await?;
    let list: Vec<DeviceJson> = devices.iter().map(DeviceJson::from).collect();
    Ok(Json(serde_json::json!({ "devices": list })))
}

/// `GET /api/v1/collectors`: the latest health summary of every collector heard on the
/// bus in the last five minutes.
pub async fn collectors(State(state): State<AppState>) -> Json<serde_json::Value> {
    let list: Vec<serde_json::Value> = state
        .hub
        .collectors(crate::now_ns())
        .into_iter()
        .map(|h| {
            serde_json::json!({
                "collector": h.collector,
                "pool": h.pool,
                "devices": h.devices,
                "synced": h.synced,
                "degraded": h.degraded,
                "unreachable": h.unreachable,
                "samplesWritten": h.samples_written,
                "reportedAt": rfc3339(h.ts),
            })
        })
        .collect();
    Json(serde_json::json!({ "collectors": list }))
}

/// `GET /api/v1/devices/{name}`
pub async fn device(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>> {
    let key = device_key(&name)?;
    let device = state
        .store
        .device(&key)
        .await?
        .ok_or(Error::UnknownDevice(name))?;
    let series = state.store.series(&key).await?;
    let series: Vec<SeriesJson> = series.iter().map(SeriesJson::from).collect();
    Ok(Json(serde_json::json!({
        "device": DeviceJson::from(&device),
        "series": series,
    })))
}

/// Query of `GET /api/v1/devices/{name}/series`.
#[derive(Debug, Deserialize)]
pub struct SeriesQuery {
    path: Option<String>,
    from: Option<String>,
    to: Option<String>,
    step: Option<String>,
}

/// A stored point.
#[derive(Debug, Serialize)]
pub struct PointJson {
    ts: String,
    value: Value,
}

/// `GET /api/v1/devices/{name}/series?path=...&from=...&to=...[&step=...]`
///
/// Without `step`: the stored points. With `step` (a duration such as `60s` or `1h`):
/// one bucket per step from `from` rounded down to a multiple of the step (buckets start
/// on whole steps, as in Grafana, so that sealed hours are read from their rollups), each
/// `{start, stats}` where `stats` is `null` for a gap, else `{count, min, max, avg, last,
/// increase}` (increase: counter growth within the step, resets counted as in
/// Prometheus).
pub async fn series(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<SeriesQuery>,
) -> Result<Json<serde_json::Value>> {
    let key = device_key(&name)?;
    let raw_path = q
        .path
        .ok_or_else(|| Error::BadRequest("the `path` parameter is required".into()))?;
    let path: Path = raw_path
        .parse()
        .map_err(|e: model::PathError| Error::BadRequest(e.to_string()))?;
    let to = match q.to.as_deref() {
        Some(s) => parse_time("to", s)?,
        None => crate::now_ns(),
    };
    let from = match q.from.as_deref() {
        Some(s) => parse_time("from", s)?,
        None => to - DEFAULT_SPAN_NS,
    };
    if from > to {
        return Err(Error::BadRequest("`from` is after `to`".into()));
    }
    if state.store.device(&key).await?.is_none() {
        return Err(Error::UnknownDevice(name));
    }
    if let Some(step) = q.step.as_deref() {
        let step = crds::parse_duration(step)
            .map_err(|e| Error::BadRequest(format!("step: {e}")))?
            .as_nanos();
        let step = i64::try_from(step).map_err(|_| Error::BadRequest("step too long".into()))?;
        let from = if step > 0 {
            from.div_euclid(step) * step
        } else {
            from
        };
        store::step::count(from, to, step).map_err(|e| Error::BadRequest(e.to_string()))?;
        let buckets = state.store.range_step(&key, &path, from, to, step).await?;
        let buckets: Vec<serde_json::Value> = buckets
            .into_iter()
            .map(|b| serde_json::json!({ "start": rfc3339(b.start), "stats": b.stats }))
            .collect();
        return Ok(Json(serde_json::json!({
            "device": key.as_str(),
            "path": path.to_string(),
            "from": rfc3339(from),
            "to": rfc3339(to),
            "step": step_text(step),
            "buckets": buckets,
        })));
    }
    let points = state.store.range(&key, &path, from, to).await?;
    let points: Vec<PointJson> = points
        .into_iter()
        .map(|p| PointJson {
            ts: rfc3339(p.ts),
            value: p.value,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "device": key.as_str(),
        "path": path.to_string(),
        "from": rfc3339(from),
        "to": rfc3339(to),
        "points": points,
    })))
}

/// Query of `GET /api/v1/top`.
#[derive(Debug, Deserialize)]
pub struct TopQuery {
    leaf: Option<String>,
    window: Option<String>,
    limit: Option<String>,
    device: Option<String>,
}

/// A ranked series.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateJson {
    device: String,
    path: String,
    per_second: f64,
    increase: f64,
    samples: u32,
}

impl From<&SeriesRate> for RateJson {
    fn from(r: &SeriesRate) -> Self {
        Self {
            device: r.device.to_string(),
            path: r.path.to_string(),
            per_second: r.per_second,
            increase: r.increase,
            samples: r.samples,
        }
    }
}

/// `GET /api/v1/top?leaf=in-octets&window=5m&limit=10[&device=NAME]`
///
/// The series that grew fastest over the last `window` (a duration such as `5m`, at most
/// `24h`; default 5m), of one device or of every device, of one leaf (last path element
/// name) or of every leaf: at most `limit` (1 to 1000, default 10), fastest first, each
/// `{device, path, perSecond, increase, samples}`. Counter resets count as in the step
/// buckets of the series endpoint; series with fewer than two numeric samples in the
/// window, and text and boolean series, are left out.
pub async fn top(
    State(state): State<AppState>,
    Query(q): Query<TopQuery>,
) -> Result<Json<serde_json::Value>> {
    let window = q.window.as_deref().unwrap_or(DEFAULT_TOP_WINDOW);
    let window =
        crds::parse_duration(window).map_err(|e| Error::BadRequest(format!("window: {e}")))?;
    if window.is_zero() {
        return Err(Error::BadRequest("the window must be positive".into()));
    }
    if window > MAX_TOP_WINDOW {
        return Err(Error::BadRequest(format!(
            "window {:?} is too long; at most 24h",
            q.window.unwrap_or_default()
        )));
    }
    let window = i64::try_from(window.as_nanos())
        .map_err(|_| Error::BadRequest("window too long".into()))?;
    let limit = match q.limit.as_deref() {
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| Error::BadRequest(format!("limit={s:?} is not a whole number")))?,
        None => DEFAULT_TOP_LIMIT,
    };
    let device = q.device.as_deref().map(device_key).transpose()?;
    let to = crate::now_ns();
    let query = TopRates {
        device,
        leaf: q.leaf,
        from: to - window,
        to,
        limit,
    };
    store::rate::check(&query).map_err(|e| Error::BadRequest(e.to_string()))?;
    if let Some(key) = &query.device
        && state.store.device(key).await?.is_none()
    {
        return Err(Error::UnknownDevice(key.to_string()));
    }
    let rates = state.store.top_rates(&query).await?;
    let series: Vec<RateJson> = rates.iter().map(RateJson::from).collect();
    Ok(Json(serde_json::json!({
        "device": query.device.as_ref().map(DeviceKey::as_str),
        "leaf": query.leaf,
        "from": rfc3339(query.from),
        "to": rfc3339(query.to),
        "window": step_text(window),
        "series": series,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_or_nanoseconds() {
        assert_eq!(parse_time("t", "1000").unwrap(), 1000);
        assert_eq!(
            parse_time("t", "1970-01-01T00:00:01Z").unwrap(),
            1_000_000_000
        );
        let err = parse_time("from", "yesterday").unwrap_err().to_string();
        assert!(err.contains("from=\"yesterday\""), "{err}");
        assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }
}
