//! Helpers for tests that talk to Cairn through the `etcd-client` crate.

use std::time::Duration;

use etcd_client::{KeyValue, WatchResponse, WatchStream};

/// The bound on waiting for one watch message.
pub const WATCH_WAIT: Duration = Duration::from_secs(15);

/// (key, value, `create_revision`, `mod_revision`, version, lease) of a key-value, for exact
/// comparisons.
pub type Kv = (String, String, i64, i64, i64, i64);

pub fn kv(kv: &KeyValue) -> Kv {
    (
        String::from_utf8_lossy(kv.key()).into_owned(),
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    )
}

/// The expected [`Kv`].
pub fn expect(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> Kv {
    (
        key.to_owned(),
        value.to_owned(),
        create,
        modified,
        version,
        lease,
    )
}

/// The next message on a watch stream (bounded wait).
pub async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WATCH_WAIT, stream.message())
        .await
        .expect("a watch response within the wait bound")
        .expect("watch stream error")
        .expect("watch stream ended")
}
