//! The JSON API under `/api/v1`.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use chrono::{DateTime, SecondsFormat, Utc};
use model::{DeviceKey, Path, TimestampNs, Value};
use serde::{Deserialize, Serialize};
use store::{DeviceSummary, SeriesSummary};

use crate::AppState;
use crate::error::{Error, Result};
use crate::health::HealthJson;

/// Default span of a series query without `from`.
const DEFAULT_SPAN_NS: i64 = 3600 * 1_000_000_000;

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
/// one bucket per step from `from`, each `{start, stats}` where `stats` is `null` for a
/// gap, else `{count, min, max, avg, last, increase}` (increase: counter growth within
/// the step, resets counted as in Prometheus).
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
