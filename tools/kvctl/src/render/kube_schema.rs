//! The protobuf schema of Kubernetes' built-in API types, and the lookup from an object's
//! `apiVersion`/`kind` to its message.
//!
//! The descriptors come from the upstream `generated.proto` files vendored in `proto/k8s.io`,
//! compiled by `build.rs` and embedded in the binary; they are decoded once, on first use.
//!
//! Packages follow the Go import paths of the API types, and the group names are not in the protos,
//! so the group is mapped by rule: group `apps` or `apps.k8s.io`-like names (first label `apps`) go
//! to `k8s.io.api.apps.<version>`, the core group (`""`) to `k8s.io.api.core`, and the three groups
//! served from other repositories to their packages (see [`packages_of_group`]).

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS).ok());

/// Full name of the envelope kube-apiserver wraps every protobuf object in.
pub(crate) const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";

/// The message named `full_name`, if the embedded schema has it. `None` for every name only if
/// the embedded descriptors failed to decode, which the tests rule out.
pub(crate) fn message(full_name: &str) -> Option<MessageDescriptor> {
    POOL.as_ref()?.get_message_by_name(full_name)
}

/// The message of the built-in type `kind` in `api_version` (`apps/v1`, `v1`, ...).
pub(crate) fn object_message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if !is_name(version) || !is_name(kind) {
        return None;
    }
    packages_of_group(group)
        .into_iter()
        .find_map(|package| message(&format!("{package}.{version}.{kind}")))
}

/// Candidate proto packages (without the version) for an API group.
fn packages_of_group(group: &str) -> Vec<String> {
    match group {
        "" => vec!["k8s.io.api.core".to_owned()],
        "internal.apiserver.k8s.io" => vec!["k8s.io.api.apiserverinternal".to_owned()],
        "apiextensions.k8s.io" => {
            vec!["k8s.io.apiextensions_apiserver.pkg.apis.apiextensions".to_owned()]
        }
        "apiregistration.k8s.io" => {
            vec!["k8s.io.kube_aggregator.pkg.apis.apiregistration".to_owned()]
        }
        _ => {
            // Built-in groups are single names (apps, batch, policy, ...) or end in k8s.io
            // (rbac.authorization.k8s.io, ...); a custom group such as apps.example.com never maps
            // onto a built-in package.
            let first = group.split('.').next().unwrap_or_default();
            if is_name(first) && (group == first || group.ends_with(".k8s.io")) {
                vec![format!("k8s.io.api.{first}")]
            } else {
                Vec::new()
            }
        }
    }
}

/// Whether `text` can be one segment of a proto full name.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_descriptors_decode() {
        assert!(POOL.is_some());
        assert!(message(UNKNOWN).is_some());
    }

    #[test]
    fn maps_groups_to_packages() {
        for (api_version, kind, full_name) in [
            ("v1", "Pod", "k8s.io.api.core.v1.Pod"),
            ("apps/v1", "Deployment", "k8s.io.api.apps.v1.Deployment"),
            (
                "coordination.k8s.io/v1",
                "Lease",
                "k8s.io.api.coordination.v1.Lease",
            ),
            (
                "rbac.authorization.k8s.io/v1",
                "Role",
                "k8s.io.api.rbac.v1.Role",
            ),
            (
                "flowcontrol.apiserver.k8s.io/v1",
                "FlowSchema",
                "k8s.io.api.flowcontrol.v1.FlowSchema",
            ),
            (
                "internal.apiserver.k8s.io/v1alpha1",
                "StorageVersion",
                "k8s.io.api.apiserverinternal.v1alpha1.StorageVersion",
            ),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            ),
            (
                "apiregistration.k8s.io/v1",
                "APIService",
                "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1.APIService",
            ),
            (
                "extensions/v1beta1",
                "Ingress",
                "k8s.io.api.extensions.v1beta1.Ingress",
            ),
        ] {
            let message = object_message(api_version, kind)
                .unwrap_or_else(|| panic!("no message for {api_version} {kind}"));
            assert_eq!(message.full_name(), full_name);
        }
    }

    #[test]
    fn rejects_foreign_and_malformed_names() {
        assert!(object_message("apps.example.com/v1", "Deployment").is_none());
        assert!(object_message("example.com/v1", "Widget").is_none());
        assert!(object_message("v1", "Pod.spec").is_none());
        assert!(object_message("v1.core", "Pod").is_none());
        assert!(object_message("", "Pod").is_none());
        assert!(object_message("v1", "").is_none());
    }
}
