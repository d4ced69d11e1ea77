//! Connections: one tonic [`Channel`] (one HTTP/2 connection) per `--conns`, spread over the
//! endpoints round-robin, and a readiness probe.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::RangeRequest;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` → `http://host:port`; URLs with a scheme are kept.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(endpoint_url(url))
        .with_context(|| format!("invalid endpoint {url:?}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

/// Opens `conns` connections (at least one), the i-th to `endpoints[i % len]`.
pub async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<Channel>> {
    if endpoints.is_empty() {
        bail!("no endpoints given");
    }
    let mut channels = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        let url = &endpoints[i % endpoints.len()];
        let channel = endpoint(url)?
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Waits until `endpoint` answers a linearizable Range (any answer from the server counts, an
/// error status included, except "unavailable"), for at most `timeout`.
pub async fn wait_ready(endpoint_addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("never tried");
    while tokio::time::Instant::now() < deadline {
        match probe(endpoint_addr).await {
            Ok(()) => return Ok(()),
            Err(err) => last_error = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{endpoint_addr} not ready after {timeout:?}: {last_error}")
}

async fn probe(endpoint_addr: &str) -> anyhow::Result<()> {
    let channel = endpoint(endpoint_addr)?
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let request = RangeRequest {
        key: Bytes::from_static(b"health"),
        ..RangeRequest::default()
    };
    match KvClient::new(channel).range(request).await {
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
            ) =>
        {
            Err(status.into())
        }
        // A response or any other status: the server is serving.
        _ => Ok(()),
    }
}
