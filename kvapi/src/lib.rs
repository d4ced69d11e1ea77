//! cairn-kvapi: the etcd v3 gRPC API and the HTTP endpoints on the client port.

pub mod pb;
