//! Leader election between operator replicas with a `coordination.k8s.io` Lease: exactly
//! one replica writes.
//!
//! [`decide`] is pure: given the Lease (or none), this replica's identity and the time, it
//! says whether to create the Lease, renew it, take it over (its holder stopped renewing
//! for longer than the lease duration) or follow. [`LeaderElector::try_lead`] carries the
//! step out with optimistic concurrency: a create that finds the Lease already there, or
//! a replace whose `resourceVersion` is stale (409), means another replica moved first, and
//! this one follows. Two replicas never both believe they lead for longer than the clock
//! skew between them: a leader that cannot renew within the lease duration stops
//! ([`run`](crate::run) exits, the pod restarts as a follower).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Lease name shared by the operator's replicas.
pub const LEASE_NAME: &str = "netpulse-operator";
/// How long a Lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews (and followers look).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// What to do about the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder let it expire (or none holds it): take it.
    TakeOver,
    /// Another replica holds it until `until`.
    Follow {
        /// The holder.
        holder: String,
        /// When its hold ends unless renewed.
        until: DateTime<Utc>,
    },
}

fn micro_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime,
) -> Option<DateTime<Utc>> {
    i64::try_from(t.0.as_nanosecond())
        .ok()
        .map(DateTime::<Utc>::from_timestamp_nanos)
}

/// The step for replica `me` at `now`.
pub fn decide(lease: Option<&Lease>, me: &str, now: DateTime<Utc>) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    let renewed = spec
        .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
        .and_then(micro_time);
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .map_or(LEASE_DURATION, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
    let until = renewed.map(|r| r + chrono::Duration::from_std(duration).unwrap_or_default());
    match until {
        Some(until) if !holder.is_empty() && until > now => Step::Follow { holder, until },
        _ => Step::TakeOver,
    }
}

/// The Lease body holding `me` at `now` (transitions counted on a change of holder).
pub fn held_by(
    namespace: &str,
    me: &str,
    now: DateTime<Utc>,
    previous: Option<&Lease>,
    step: &Step,
) -> Lease {
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let spec = previous.and_then(|l| l.spec.as_ref());
    let transitions =
        spec.and_then(|s| s.lease_transitions).unwrap_or(0) + i32::from(*step == Step::TakeOver);
    let acquired = match (step, spec.and_then(|s| s.acquire_time.as_ref())) {
        (Step::Renew, Some(t)) => serde_json::to_value(t).unwrap_or(json!(stamp)),
        _ => json!(stamp),
    };
    let mut lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": LEASE_NAME, "namespace": namespace },
        "spec": {
            "holderIdentity": me,
            "leaseDurationSeconds": LEASE_DURATION.as_secs(),
            "acquireTime": acquired,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        },
    }))
    .expect("a Lease");
    if let Some(previous) = previous {
        lease.metadata.resource_version = previous.metadata.resource_version.clone();
    }
    lease
}

/// One replica's side of the election.
#[derive(Clone, Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    me: String,
}

impl LeaderElector {
    /// Replica `me` (its pod name) electing through the Lease in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, me: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            me: me.to_owned(),
        }
    }

    /// The namespace of the Lease.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// One round at `now`: whether this replica leads afterwards. Losing a race (409) is
    /// following, not an error.
    pub async fn try_lead(&self, now: DateTime<Utc>) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(LEASE_NAME).await?;
        let step = decide(lease.as_ref(), &self.me, now);
        let body = held_by(&self.namespace, &self.me, now, lease.as_ref(), &step);
        let result = match step {
            Step::Follow { .. } => return Ok(false),
            Step::Create => self.api.create(&PostParams::default(), &body).await,
            Step::Renew | Step::TakeOver => {
                self.api
                    .replace(LEASE_NAME, &PostParams::default(), &body)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_767_225_600 + s, 0).expect("time")
    }

    fn lease(holder: &str, renewed: i64) -> Lease {
        serde_json::from_value(json!({
            "metadata": { "name": LEASE_NAME, "namespace": "netpulse", "resourceVersion": "41" },
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15,
                "acquireTime": at(0).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "renewTime": at(renewed).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "leaseTransitions": 2,
            },
        }))
        .expect("lease")
    }

    #[test]
    fn the_holder_renews_others_follow_until_it_lapses() {
        assert_eq!(decide(None, "op-a", at(0)), Step::Create);
        let held = lease("op-a", 10);
        assert_eq!(decide(Some(&held), "op-a", at(11)), Step::Renew);
        assert_eq!(
            decide(Some(&held), "op-b", at(24)),
            Step::Follow {
                holder: "op-a".into(),
                until: at(25)
            }
        );
        assert_eq!(decide(Some(&held), "op-b", at(25)), Step::TakeOver);
        assert_eq!(decide(Some(&lease("", 10)), "op-b", at(11)), Step::TakeOver);
        // Taking over counts a transition and keeps the resourceVersion for the replace.
        let taken = held_by("netpulse", "op-b", at(30), Some(&held), &Step::TakeOver);
        let spec = taken.spec.as_ref().expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("op-b"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("41"));
        // Renewing keeps the acquire time.
        let renewed = held_by("netpulse", "op-a", at(12), Some(&held), &Step::Renew);
        assert_eq!(
            renewed.spec.as_ref().and_then(|s| s.acquire_time.clone()),
            held.spec.as_ref().and_then(|s| s.acquire_time.clone())
        );
    }

    async fn answer(
        handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
        status: u16,
        body: serde_json::Value,
    ) -> (String, String, Option<serde_json::Value>) {
        let (request, send) = handle.next_request().await.expect("request");
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let sent = serde_json::from_slice(&bytes).ok();
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
        (method, uri, sent)
    }

    fn not_found() -> serde_json::Value {
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404 })
    }

    fn conflict() -> serde_json::Value {
        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409 })
    }

    #[tokio::test]
    async fn rounds_create_renew_follow_and_lose_races_cleanly() {
        let (mock, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let elector = LeaderElector::new(kube::Client::new(mock, "netpulse"), "netpulse", "op-b");
        let path = "/apis/coordination.k8s.io/v1/namespaces/netpulse/leases";
        // No Lease: create it and lead.
        let round = tokio::spawn({
            let e = elector.clone();
            async move { e.try_lead(at(0)).await }
        });
        let (m, u, _) = answer(&mut handle, 404, not_found()).await;
        assert_eq!(
            (m.as_str(), u.as_str()),
            ("GET", &*format!("{path}/{LEASE_NAME}"))
        );
        let (m, u, body) = answer(&mut handle, 201, json!(lease("op-b", 0))).await;
        assert_eq!(m, "POST");
        assert!(u.starts_with(path), "{u}");
        assert_eq!(body.expect("body")["spec"]["holderIdentity"], "op-b");
        assert!(round.await.expect("round").expect("ok"));

        // Held by another replica, fresh: follow without writing.
        let round = tokio::spawn({
            let e = elector.clone();
            async move { e.try_lead(at(20)).await }
        });
        answer(&mut handle, 200, json!(lease("op-a", 10))).await;
        assert!(!round.await.expect("round").expect("ok"));

        // Lapsed: take over with a replace carrying the resourceVersion; another replica
        // replaced it first (409): follow.
        let round = tokio::spawn({
            let e = elector.clone();
            async move { e.try_lead(at(40)).await }
        });
        answer(&mut handle, 200, json!(lease("op-a", 10))).await;
        let (m, u, body) = answer(&mut handle, 409, conflict()).await;
        assert_eq!(
            (m.as_str(), u.as_str()),
            ("PUT", &*format!("{path}/{LEASE_NAME}?"))
        );
        let body = body.expect("body");
        assert_eq!(body["metadata"]["resourceVersion"], "41");
        assert_eq!(body["spec"]["leaseTransitions"], 3);
        assert!(!round.await.expect("round").expect("ok"));
    }
}
