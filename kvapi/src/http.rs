//! The HTTP endpoints etcd serves on its client port: `/health`, `/version`, `/livez`, `/readyz`
//! and `/metrics` (etcd `etcdhttp`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use cairn_engine::request::{AlarmAction, AlarmMember, AlarmType, RangeRequest};
use serde::Serialize;

use crate::context::Ctx;
use crate::metrics::Metrics;
use crate::status::kv_error;

/// How long `/health` waits for its test read (etcd: the request timeout).
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(7);

#[derive(Clone)]
struct HttpState {
    ctx: Ctx,
    metrics: Arc<Metrics>,
}

pub fn router(ctx: Ctx, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/metrics", get(render_metrics))
        .with_state(HttpState { ctx, metrics })
}

/// etcd's `/health` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub health: String,
    pub reason: String,
}

impl Health {
    fn healthy() -> Self {
        Self {
            health: "true".to_owned(),
            reason: String::new(),
        }
    }

    fn unhealthy(reason: impl Into<String>) -> Self {
        Self {
            health: "false".to_owned(),
            reason: reason.into(),
        }
    }

    fn is_healthy(&self) -> bool {
        self.health == "true"
    }
}

/// `/health`'s query: `exclude=<ALARM>` (repeatable) and `serializable=true`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HealthQuery {
    pub excluded_alarms: Vec<String>,
    pub serializable: bool,
}

impl HealthQuery {
    pub fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("exclude", alarm)) if !alarm.is_empty() => {
                    out.excluded_alarms.push(alarm.to_owned());
                }
                Some(("serializable", value)) => out.serializable = value == "true",
                _ => {}
            }
        }
        out
    }
}

fn alarm_name(alarm: AlarmType) -> &'static str {
    match alarm {
        AlarmType::NoSpace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    }
}

/// etcd's health checks before the test read: raised alarms (unless excluded), then the leader
/// (unless the probe is serializable).
pub fn check_health(alarms: &[AlarmMember], query: &HealthQuery, has_leader: bool) -> Health {
    for alarm in alarms {
        let name = alarm_name(alarm.alarm);
        if query
            .excluded_alarms
            .iter()
            .any(|excluded| excluded == name)
        {
            continue;
        }
        return Health::unhealthy(format!("ALARM {name}"));
    }
    if !query.serializable && !has_leader {
        return Health::unhealthy("RAFT NO LEADER");
    }
    Health::healthy()
}

/// 200 with the JSON when healthy; otherwise 503 with the JSON and a newline, as Go's
/// `http.Error` writes it.
pub fn health_response(health: &Health) -> Response {
    let body = serde_json::to_string(health).unwrap_or_default();
    if health.is_healthy() {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{body}\n"),
        )
            .into_response()
    }
}

async fn health(State(state): State<HttpState>, uri: Uri) -> Response {
    let query = HealthQuery::parse(uri.query());
    let node = &state.ctx.node;
    let alarms = match node.alarm(AlarmAction::Get, None).await {
        Ok((alarms, _)) => alarms,
        Err(err) => {
            return health_response(&Health::unhealthy(format!(
                "ALARM ERROR:{}",
                kv_error(err).message()
            )));
        }
    };
    let has_leader = node.leader_watch().borrow().is_some();
    let health = check_health(&alarms, &query, has_leader);
    if !health.is_healthy() {
        return health_response(&health);
    }
    let probe = RangeRequest {
        key: Bytes::from_static(b"health"),
        limit: 1,
        keys_only: true,
        serializable: query.serializable,
        ..RangeRequest::default()
    };
    let health = match tokio::time::timeout(HEALTH_READ_TIMEOUT, node.range(probe)).await {
        Ok(Ok(_)) => Health::healthy(),
        Ok(Err(err)) => Health::unhealthy(format!("RANGE ERROR:{}", kv_error(err).message())),
        Err(_) => Health::unhealthy("RANGE ERROR:etcdserver: request timed out"),
    };
    health_response(&health)
}

/// etcd's `/version` answer.
#[derive(Debug, Serialize)]
pub struct Versions<'a> {
    pub etcdserver: &'a str,
    pub etcdcluster: &'a str,
}

pub fn version_body(server: &str, cluster: &str) -> String {
    serde_json::to_string(&Versions {
        etcdserver: server,
        etcdcluster: cluster,
    })
    .unwrap_or_default()
}

async fn version(State(state): State<HttpState>) -> Response {
    let config = &state.ctx.config;
    let body = version_body(&config.version, &config.cluster_version);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn ok() -> &'static str {
    "ok"
}

async fn render_metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response) -> (StatusCode, String) {
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    fn nospace() -> AlarmMember {
        AlarmMember {
            member_id: 1,
            alarm: AlarmType::NoSpace,
        }
    }

    #[tokio::test]
    async fn healthy_body_is_etcds_json() {
        let health = check_health(&[], &HealthQuery::default(), true);
        let (status, body) = body_of(health_response(&health)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"health":"true","reason":""}"#);
    }

    #[tokio::test]
    async fn no_leader_and_alarms_are_unhealthy() {
        let health = check_health(&[], &HealthQuery::default(), false);
        let (status, body) = body_of(health_response(&health)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n"
        );

        let health = check_health(&[nospace()], &HealthQuery::default(), true);
        assert_eq!(health, Health::unhealthy("ALARM NOSPACE"));
        let corrupt = AlarmMember {
            member_id: 1,
            alarm: AlarmType::Corrupt,
        };
        assert_eq!(
            check_health(&[corrupt], &HealthQuery::default(), true).reason,
            "ALARM CORRUPT"
        );
    }

    #[test]
    fn query_excludes_alarms_and_skips_the_leader_check() {
        let query = HealthQuery::parse(Some("exclude=NOSPACE&serializable=true&exclude="));
        assert_eq!(
            query,
            HealthQuery {
                excluded_alarms: vec!["NOSPACE".to_owned()],
                serializable: true
            }
        );
        assert_eq!(check_health(&[nospace()], &query, false), Health::healthy());
        assert_eq!(HealthQuery::parse(None), HealthQuery::default());
    }

    #[test]
    fn version_body_is_what_kubeadm_parses() {
        assert_eq!(
            version_body("3.6.5", "3.6.0"),
            r#"{"etcdserver":"3.6.5","etcdcluster":"3.6.0"}"#
        );
    }

    #[tokio::test]
    async fn probes_answer_ok() {
        assert_eq!(ok().await, "ok");
    }
}
