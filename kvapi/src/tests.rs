//! The serving stack end to end, without an engine: one port answering gRPC over h2c and
//! HTTP/1.1, etcd's error statuses on the wire, the fallback, the gRPC metrics and shutdown.

use std::pin::Pin;
use std::time::Duration;

use axum::routing::get;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;
use tonic::{Code, Request, Response, Status, Streaming};

use super::*;
use crate::pb::etcdserverpb::{
    self as pb, cluster_client::ClusterClient, lease_client::LeaseClient, lease_server::Lease,
};
use crate::status::EtcdError;

struct FakeLease;

type KeepAlives = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for FakeLease {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::LeaseGrantResponse {
            header: None,
            id: r.id + 1,
            ttl: r.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        _request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        Err(EtcdError::LeaseNotFound.into())
    }

    type LeaseKeepAliveStream = KeepAlives;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let replies = request.into_inner().map(|r| {
            r.map(|r| pb::LeaseKeepAliveResponse {
                header: None,
                id: r.id,
                ttl: 10,
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn lease_time_to_live(
        &self,
        _request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

async fn http1_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

#[tokio::test]
async fn one_port_serves_grpc_and_http() {
    let metrics = Metrics::new(
        Box::new(cairn_engine::node::NodeMetrics::default),
        &ApiConfig::default(),
    )
    .expect("metrics");
    let grpc = Routes::new(pb::lease_server::LeaseServer::new(FakeLease)).into_axum_router();
    let http = Router::new().route("/version", get(|| async { "v" }));
    let app = compose(grpc, http, &metrics);

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (stop, mut stopping) = watch::channel(false);
    let server = tokio::spawn(run(
        app,
        listener,
        async move {
            let _ = shutdown_rx.await;
        },
        stop,
        Duration::from_secs(1),
    ));

    // gRPC over h2c.
    let mut lease = LeaseClient::connect(format!("http://{addr}"))
        .await
        .expect("grpc connect");
    let granted = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 41 })
        .await
        .expect("grant")
        .into_inner();
    assert_eq!((granted.id, granted.ttl), (42, 30));

    let err = lease
        .lease_revoke(pb::LeaseRevokeRequest { id: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");

    let requests = tokio_stream::iter([
        pb::LeaseKeepAliveRequest { id: 7 },
        pb::LeaseKeepAliveRequest { id: 8 },
    ]);
    let mut replies = lease
        .lease_keep_alive(requests)
        .await
        .expect("keep-alive")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(reply) = replies.next().await {
        ids.push(reply.expect("reply").id);
    }
    assert_eq!(ids, vec![7, 8]);

    // A service that is not served answers Unimplemented (the fallback), not an HTTP error.
    let mut cluster = ClusterClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let err = cluster
        .member_list(pb::MemberListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);

    // HTTP/1.1 on the same port.
    let version = http1_get(addr, "/version").await;
    assert!(version.starts_with("HTTP/1.1 200"), "{version}");
    assert!(version.ends_with("\r\n\r\nv"), "{version}");
    let missing = http1_get(addr, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    // Every etcd call was counted with its code.
    let text = metrics.render();
    for line in [
        r#"grpc_server_started_total{grpc_method="LeaseGrant",grpc_service="etcdserverpb.Lease",grpc_type="unary"} 1"#,
        r#"grpc_server_handled_total{grpc_code="OK",grpc_method="LeaseGrant",grpc_service="etcdserverpb.Lease",grpc_type="unary"} 1"#,
        r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="LeaseRevoke",grpc_service="etcdserverpb.Lease",grpc_type="unary"} 1"#,
        r#"grpc_server_started_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
    assert!(text.contains("grpc_server_handling_seconds_count{grpc_method=\"LeaseGrant\""));

    drop((lease, cluster));
    shutdown_tx.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .expect("server task");
    assert!(*stopping.borrow_and_update());
}
