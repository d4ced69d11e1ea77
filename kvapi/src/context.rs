//! What every service shares: the node, the configuration and the shutdown signal.

use std::sync::Arc;

use cairn_engine::node::Node;
use tokio::sync::watch;

use crate::config::ApiConfig;
use crate::convert;
use crate::pb::etcdserverpb as pb;

pub struct ApiContext {
    pub node: Node,
    pub config: ApiConfig,
    shutdown: watch::Receiver<bool>,
}

pub type Ctx = Arc<ApiContext>;

impl ApiContext {
    pub fn new(node: Node, config: ApiConfig, shutdown: watch::Receiver<bool>) -> Ctx {
        Arc::new(Self {
            node,
            config,
            shutdown,
        })
    }

    /// A header with the node's current revision and term.
    pub fn header(&self) -> pb::ResponseHeader {
        convert::header(self.node.header())
    }

    /// A header without a revision, for calls that do not touch the key space (etcd's cluster
    /// and auth responses).
    pub fn header_without_revision(&self) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision: 0,
            ..self.header()
        }
    }

    /// Completes when the server starts shutting down; long-lived streams end then.
    pub async fn stopping(&self) {
        let mut shutdown = self.shutdown.clone();
        // A dropped sender means the server is gone: stop as well.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }
}
