//! grpc-go's answer to an oversized request message, which etcd clients (and kube-apiserver)
//! rely on: `ResourceExhausted "grpc: received message larger than max (N vs. M)"`.
//!
//! tonic refuses a message above `max_decoding_message_size` with `OutOfRange "Error, decoded
//! message length too large: found N bytes, the limit is: M bytes"`. `OutOfRange` means
//! "compacted" to kube-apiserver (HTTP 410), so this middleware rewrites that one status, which
//! tonic sends in the headers of a trailers-only response, into grpc-go's.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

pub async fn grpc_go_oversize_status(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let is_out_of_range = headers
        .get("grpc-status")
        .is_some_and(|v| v == OUT_OF_RANGE);
    if !is_out_of_range {
        return response;
    }
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else {
        return response;
    };
    if let Some(value) = rewrite(message).and_then(|m| HeaderValue::from_str(&m).ok()) {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
        headers.insert("grpc-message", value);
    }
    response
}

/// `Error, decoded message length too large: found N bytes, the limit is: M bytes` (possibly
/// percent-encoded) → `grpc: received message larger than max (N vs. M)`.
fn rewrite(message: &str) -> Option<String> {
    let decoded = message
        .replace("%20", " ")
        .replace("%3A", ":")
        .replace("%2C", ",");
    let rest = decoded.strip_prefix(TONIC_PREFIX)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let found: u64 = found.trim().parse().ok()?;
    let limit: u64 = limit.trim().parse().ok()?;
    Some(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn tonic_message_becomes_grpc_go_message() {
        assert_eq!(
            rewrite("Error, decoded message length too large: found 2621451 bytes, the limit is: 2097152 bytes")
                .as_deref(),
            Some("grpc: received message larger than max (2621451 vs. 2097152)")
        );
        assert_eq!(
            rewrite("Error,%20decoded%20message%20length%20too%20large%3A%20found%2010%20bytes%2C%20the%20limit%20is%3A%205%20bytes")
                .as_deref(),
            Some("grpc: received message larger than max (10 vs. 5)")
        );
        assert_eq!(
            rewrite("etcdserver: mvcc: required revision has been compacted"),
            None
        );
    }
}
