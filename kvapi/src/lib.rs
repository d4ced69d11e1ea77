//! cairn-kvapi: the etcd v3 gRPC API and the HTTP endpoints on the client port.
//!
//! ```text
//!              ┌─ gRPC (h2c) ─► grpc_layer::track ─► leader::require_leader ─► origin
//!  TcpListener ┤                  (metrics)          (hasleader metadata)     (who asked,
//!   (h1 + h2c) │                                                              for history)
//!              │                               tonic Routes: service/{kv,watch,lease, ◄┘
//!              │                                   cluster,maintenance,auth,history}
//!              └─ HTTP/1.1 ──► http: /health /version /livez /readyz /metrics
//!
//!  service handler: validate.rs ─► convert.rs ─► cairn_engine::node::Node ─► convert.rs
//!                    errors ─► status.rs (etcd's exact codes and strings)
//! ```
//!
//! One port serves gRPC and HTTP, as etcd's client port does. The services are thin: checks
//! etcd's API layer makes are in `validate.rs`, wire conversions in `convert.rs`, and every
//! error a client sees is built in `status.rs`.

mod authority;
pub mod config;
mod context;
pub mod convert;
mod grpc_layer;
pub mod http;
mod leader;
pub mod metrics;
mod origin;
mod oversize;
pub mod pb;
pub mod peer;
mod service;
pub mod status;
pub mod validate;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use cairn_engine::node::Node;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

pub use config::ApiConfig;
pub use leader::{HAS_LEADER, REQUIRE_LEADER_KEY};

use crate::context::{ApiContext, Ctx};
use crate::metrics::Metrics;
use crate::pb::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::pb::history::history_server::HistoryServer;
use crate::service::{auth, cluster, history, kv, lease, maintenance, watch as watch_service};

/// Why the API server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("registering the API metrics failed")]
    Metrics {
        #[source]
        source: prometheus::Error,
    },
}

/// Serves the etcd v3 API and etcd's HTTP endpoints on `listener` until `shutdown` completes.
///
/// On shutdown, long-lived streams (watches, keep-alives, snapshots) end with "etcdserver:
/// server stopped", connections stop accepting new calls, and in-flight calls get
/// `config.shutdown_grace` to finish.
pub async fn serve(
    node: Node,
    listener: TcpListener,
    config: ApiConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ApiError> {
    let (stop, stopping) = watch::channel(false);
    let source_node = node.clone();
    let metrics = Metrics::new(Box::new(move || source_node.metrics()), &config)
        .map_err(|source| ApiError::Metrics { source })?;
    let grace = config.shutdown_grace;
    let ctx = ApiContext::new(node, config, stopping);
    let app = router(&ctx, &metrics);
    run(app, listener, shutdown, stop, grace).await;
    Ok(())
}

/// Accepts connections and serves `app` on each (HTTP/1.1 or h2c, detected per connection)
/// until `shutdown`; then flips `stop` (ending long-lived streams) and drains for `grace`.
async fn run(
    app: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    stop: watch::Sender<bool>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // etcd lets one connection carry any number of streams (kube-apiserver multiplexes watches).
    builder.http2().max_concurrent_streams(u32::MAX);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "accepting a client connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, %peer, "setting TCP_NODELAY failed");
        }
        // etcdctl's `--cluster` commands send an `:authority` h2 would refuse: see authority.rs.
        let stream = authority::AuthorityFix::new(stream);
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, %peer, "client connection ended with an error");
            }
        });
    }

    tracing::info!("etcd API shutting down");
    stop.send_replace(true);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "client connections still open after the shutdown grace period"
        );
    }
}

/// The gRPC services and the HTTP endpoints, on one router.
fn router(ctx: &Ctx, metrics: &Arc<Metrics>) -> Router {
    let grpc = grpc_routes(ctx)
        .into_axum_router()
        .layer(axum::middleware::from_fn(origin::with_request_origin))
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            leader::require_leader,
        ));
    compose(grpc, http::router(ctx.clone(), metrics.clone()), metrics)
}

/// gRPC routes counted by the metrics layer, HTTP routes beside them, and a fallback that
/// answers each protocol in its own terms.
fn compose(grpc: Router, http: Router, metrics: &Arc<Metrics>) -> Router {
    grpc.layer(axum::middleware::from_fn(oversize::grpc_go_oversize_status))
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            grpc_layer::track,
        ))
        .merge(http)
        .fallback(fallback)
}

fn grpc_routes(ctx: &Ctx) -> Routes {
    // etcd: gRPC messages may exceed --max-request-bytes by its framing allowance; responses are
    // not limited (a large Range answers with a large message).
    let recv = ctx.config.max_recv_message_bytes();
    let send = i32::MAX as usize;
    macro_rules! limited {
        ($server:ident, $service:expr) => {
            $server::new($service)
                .max_decoding_message_size(recv)
                .max_encoding_message_size(send)
        };
    }
    Routes::new(limited!(KvServer, kv::KvService::new(ctx.clone())))
        .add_service(limited!(
            WatchServer,
            watch_service::WatchService::new(ctx.clone())
        ))
        .add_service(limited!(LeaseServer, lease::LeaseService::new(ctx.clone())))
        .add_service(limited!(
            ClusterServer,
            cluster::ClusterService::new(ctx.clone())
        ))
        .add_service(limited!(
            MaintenanceServer,
            maintenance::MaintenanceService::new(ctx.clone())
        ))
        .add_service(limited!(AuthServer, auth::AuthService::new(ctx.clone())))
        .add_service(limited!(
            HistoryServer,
            history::HistoryService::new(ctx.clone())
        ))
}

/// Unknown paths: gRPC's Unimplemented for gRPC calls, 404 for everything else.
async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        tonic::Status::unimplemented("").into_http()
    } else {
        ::http::StatusCode::NOT_FOUND.into_response()
    }
}
