//! Value rendering against real encodings: Kubernetes objects built with `k8s-pb` (prost types
//! generated from the upstream protos independently of kvctl's descriptors), encoded and wrapped in
//! the `k8s\0` + `runtime.Unknown` envelope as kube-apiserver stores them, then rendered and read
//! back as YAML. Also JSON, text, binary, diffs, and malformed input (no panics, hex fallback).
#![allow(
    clippy::unnecessary_wraps,
    reason = "the builders below return the Option that prost's optional fields take"
)]

use std::collections::BTreeMap;

use k8s_pb::Resource;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use kvctl::render::{Format, Rendering, render_key, render_value, unified_diff};
use proptest::prelude::*;
use prost::Message;
use yaml_serde::Value;

const MAGIC: &[u8] = b"k8s\0";

// ---------------------------------------------------------------------------------------------
// Helpers

/// The bytes kube-apiserver stores for `object`: magic, then `runtime.Unknown` with the type,
/// the object's encoding, and the two content fields Go always writes (empty).
fn stored<T: Message + Resource>(object: &T) -> Vec<u8> {
    envelope(T::API_VERSION, T::KIND, &object.encode_to_vec())
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw.to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

/// Renders a stored object, checks it was recognised as protobuf, and parses the YAML back.
fn render_object(value: &[u8]) -> (Rendering, Value) {
    let rendering = render_value(b"/registry/test", value);
    assert_eq!(
        rendering.format,
        Format::KubernetesProtobuf,
        "{}",
        rendering.text
    );
    assert!(
        !rendering.text.contains("# Not decoded"),
        "{}",
        rendering.text
    );
    let document = yaml_serde::from_str(&rendering.text).expect("rendering is YAML");
    (rendering, document)
}

/// The node at a dot-separated path; numeric segments index sequences.
fn at<'a>(document: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(document, |node, segment| {
        match (node, segment.parse::<usize>()) {
            (Value::Sequence(items), Ok(index)) => &items[index],
            _ => &node[segment],
        }
    })
}

fn s(text: &str) -> Option<String> {
    Some(text.to_owned())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Quantity { string: s(value) }))
        .collect()
}

fn time(seconds: i64) -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    })
}

fn int_or_string_int(value: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(value),
        str_val: Some(String::new()),
    })
}

fn int_or_string_str(value: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: Some(0),
        str_val: s(value),
    })
}

fn metadata(name: &str, namespace: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        uid: s("5c8c3f4e-6b1d-4c4e-9d4a-0d2a8b7f1e01"),
        resource_version: s("1042"),
        creation_timestamp: time(1_700_000_000),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Objects

fn pod(image: &str) -> core::Pod {
    core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("web-7d4b9c-x2k8p"),
            generate_name: s("web-7d4b9c-"),
            namespace: s("default"),
            uid: s("6f1c2a8e-3b7d-4e29-a0c4-5d8e9f1a2b3c"),
            resource_version: s("1234"),
            generation: Some(1),
            creation_timestamp: time(1_700_000_000),
            labels: labels(&[("app", "web"), ("pod-template-hash", "7d4b9c")]),
            annotations: labels(&[("example.com/owner", "team-a")]),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-7d4b9c"),
                uid: s("0b9e1d2c-4a5f-4b6e-8c7d-9e0f1a2b3c4d"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            finalizers: vec!["example.com/protect".to_owned()],
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kube-controller-manager"),
                operation: s("Update"),
                api_version: s("v1"),
                time: time(1_700_000_000),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#.to_vec()),
                }),
                subresource: None,
            }],
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("config"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference {
                            name: s("web-config"),
                        }),
                        default_mode: Some(0o644),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("app"),
                image: s(image),
                args: vec!["--port=8080".to_owned()],
                ports: vec![core::ContainerPort {
                    name: s("http"),
                    container_port: Some(8080),
                    protocol: s("TCP"),
                    ..Default::default()
                }],
                env: vec![
                    core::EnvVar {
                        name: s("MODE"),
                        value: s("production"),
                        value_from: None,
                    },
                    core::EnvVar {
                        name: s("PASSWORD"),
                        value: None,
                        value_from: Some(core::EnvVarSource {
                            secret_key_ref: Some(core::SecretKeySelector {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("db"),
                                }),
                                key: s("password"),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                    },
                ],
                resources: Some(core::ResourceRequirements {
                    requests: quantities(&[("cpu", "250m"), ("memory", "64Mi")]),
                    limits: quantities(&[("cpu", "1"), ("memory", "128Mi")]),
                    claims: Vec::new(),
                }),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: int_or_string_str("http"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    initial_delay_seconds: Some(3),
                    period_seconds: Some(10),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        tcp_socket: Some(core::TcpSocketAction {
                            port: int_or_string_int(8080),
                            host: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                image_pull_policy: s("IfNotPresent"),
                ..Default::default()
            }],
            restart_policy: s("Always"),
            termination_grace_period_seconds: Some(30),
            dns_policy: s("ClusterFirst"),
            service_account_name: s("default"),
            automount_service_account_token: Some(false),
            node_name: s("node-1"),
            security_context: Some(core::PodSecurityContext {
                run_as_user: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: s("Running"),
            conditions: vec![core::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_probe_time: Some(meta::Time::default()),
                last_transition_time: time(1_700_000_060),
                ..Default::default()
            }],
            host_ip: s("192.168.1.10"),
            pod_ip: s("10.244.1.7"),
            pod_ips: vec![core::PodIp {
                ip: s("10.244.1.7"),
            }],
            start_time: time(1_700_000_001),
            qos_class: s("Burstable"),
            ..Default::default()
        }),
    }
}

fn deployment() -> apps::Deployment {
    apps::Deployment {
        metadata: Some(meta::ObjectMeta {
            generation: Some(3),
            labels: labels(&[("app", "web")]),
            ..metadata("web", "default").unwrap()
        }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: Vec::new(),
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    // Go writes the zero time as an empty message; JSON shows it as null.
                    creation_timestamp: Some(meta::Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("app"),
                        image: s("nginx:1.27"),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: int_or_string_int(0),
                    max_surge: int_or_string_str("25%"),
                }),
            }),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(3),
            replicas: Some(3),
            updated_replicas: Some(3),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            conditions: vec![apps::DeploymentCondition {
                r#type: s("Available"),
                status: s("True"),
                last_update_time: time(1_700_000_100),
                last_transition_time: time(1_700_000_100),
                reason: s("MinimumReplicasAvailable"),
                message: s("Deployment has minimum availability."),
            }],
            ..Default::default()
        }),
    }
}

fn config_map() -> core::ConfigMap {
    core::ConfigMap {
        metadata: metadata("web-config", "default"),
        immutable: Some(true),
        data: labels(&[("app.properties", "color=blue\nsize=3\n"), ("port", "8080")]),
        binary_data: BTreeMap::from([("logo.png".to_owned(), vec![0x89, b'P', b'N', b'G'])]),
    }
}

fn secret() -> core::Secret {
    core::Secret {
        metadata: metadata("db", "default"),
        immutable: None,
        data: BTreeMap::from([
            ("password".to_owned(), b"s3cr3t".to_vec()),
            ("blob".to_owned(), vec![0, 0xff, 0x10]),
        ]),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
    }
}

fn lease() -> coordination::Lease {
    coordination::Lease {
        metadata: metadata("node-1", "kube-node-lease"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(123_456_789),
            }),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_030),
                nanos: Some(0),
            }),
            lease_transitions: Some(2),
            ..Default::default()
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes protobuf

#[test]
fn pod_renders_as_kubernetes_yaml() {
    let (rendering, pod) = render_object(&stored(&pod("nginx:1.27")));
    assert!(
        rendering
            .text
            .starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-7d4b9c-x2k8p\n"),
        "{}",
        rendering.text
    );
    assert_eq!(at(&pod, "metadata.namespace"), "default");
    assert_eq!(
        at(&pod, "metadata.uid"),
        "6f1c2a8e-3b7d-4e29-a0c4-5d8e9f1a2b3c"
    );
    assert_eq!(at(&pod, "metadata.resourceVersion"), "1234");
    assert_eq!(at(&pod, "metadata.generation"), 1);
    assert_eq!(
        at(&pod, "metadata.creationTimestamp"),
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(at(&pod, "metadata.labels.app"), "web");
    assert_eq!(at(&pod, "metadata.labels.pod-template-hash"), "7d4b9c");
    assert_eq!(at(&pod, "metadata.ownerReferences.0.kind"), "ReplicaSet");
    assert_eq!(
        at(&pod, "metadata.ownerReferences.0.controller"),
        &Value::Bool(true)
    );
    assert_eq!(at(&pod, "metadata.finalizers.0"), "example.com/protect");
    assert_eq!(
        at(
            &pod,
            "metadata.managedFields.0.fieldsV1.f:metadata.f:labels.f:app"
        ),
        &Value::Mapping(yaml_serde::Mapping::new())
    );

    assert_eq!(at(&pod, "spec.containers.0.image"), "nginx:1.27");
    assert_eq!(at(&pod, "spec.containers.0.ports.0.containerPort"), 8080);
    assert_eq!(at(&pod, "spec.containers.0.resources.requests.cpu"), "250m");
    assert_eq!(
        at(&pod, "spec.containers.0.resources.limits.memory"),
        "128Mi"
    );
    assert_eq!(at(&pod, "spec.containers.0.resources.limits.cpu"), "1");
    // IntOrString both ways; ProbeHandler inlined into Probe as in JSON.
    assert_eq!(
        at(&pod, "spec.containers.0.livenessProbe.httpGet.port"),
        "http"
    );
    assert_eq!(
        at(&pod, "spec.containers.0.readinessProbe.tcpSocket.port"),
        8080
    );
    assert_eq!(
        at(&pod, "spec.containers.0.livenessProbe.initialDelaySeconds"),
        3
    );
    // LocalObjectReference inlined into selectors; VolumeSource inlined into Volume.
    assert_eq!(
        at(&pod, "spec.containers.0.env.1.valueFrom.secretKeyRef.name"),
        "db"
    );
    assert_eq!(at(&pod, "spec.volumes.0.configMap.name"), "web-config");
    assert_eq!(at(&pod, "spec.volumes.0.configMap.defaultMode"), 0o644);
    // Pointers to zero values are stored, so they are shown.
    assert_eq!(
        at(&pod, "spec.automountServiceAccountToken"),
        &Value::Bool(false)
    );
    assert_eq!(at(&pod, "spec.securityContext.runAsUser"), 0);

    assert_eq!(at(&pod, "status.phase"), "Running");
    assert_eq!(at(&pod, "status.podIP"), "10.244.1.7");
    assert_eq!(at(&pod, "status.podIPs.0.ip"), "10.244.1.7");
    assert_eq!(at(&pod, "status.startTime"), "2023-11-14T22:13:21Z");
    assert_eq!(at(&pod, "status.conditions.0.lastProbeTime"), &Value::Null);
    assert_eq!(
        at(&pod, "status.conditions.0.lastTransitionTime"),
        "2023-11-14T22:14:20Z"
    );
    insta::assert_snapshot!("pod", rendering.text);
}

#[test]
fn deployment_renders_with_zero_time_and_int_or_string() {
    let (rendering, deployment) = render_object(&stored(&deployment()));
    assert_eq!(at(&deployment, "apiVersion"), "apps/v1");
    assert_eq!(at(&deployment, "kind"), "Deployment");
    assert_eq!(at(&deployment, "spec.replicas"), 3);
    assert_eq!(at(&deployment, "spec.selector.matchLabels.app"), "web");
    assert_eq!(
        at(&deployment, "spec.strategy.rollingUpdate.maxSurge"),
        "25%"
    );
    assert_eq!(
        at(&deployment, "spec.strategy.rollingUpdate.maxUnavailable"),
        0
    );
    assert_eq!(
        at(&deployment, "spec.template.spec.containers.0.image"),
        "nginx:1.27"
    );
    let template_metadata = at(&deployment, "spec.template.metadata")
        .as_mapping()
        .unwrap();
    assert_eq!(
        template_metadata.get("creationTimestamp"),
        Some(&Value::Null)
    );
    assert!(
        rendering.text.contains("\n        resources: {}\n"),
        "{}",
        rendering.text
    );
    insta::assert_snapshot!("deployment", rendering.text);
}

#[test]
fn config_map_renders_data_and_base64_binary_data() {
    let (rendering, config_map) = render_object(&stored(&config_map()));
    assert_eq!(at(&config_map, "kind"), "ConfigMap");
    assert_eq!(at(&config_map, "immutable"), &Value::Bool(true));
    assert_eq!(at(&config_map, "data.port"), "8080");
    let data = at(&config_map, "data").as_mapping().unwrap();
    assert_eq!(data.get("app.properties").unwrap(), "color=blue\nsize=3\n");
    assert_eq!(
        at(&config_map, "binaryData")
            .as_mapping()
            .unwrap()
            .get("logo.png")
            .unwrap(),
        "iVBORw=="
    );
    insta::assert_snapshot!("config_map", rendering.text);
}

#[test]
fn secret_data_is_base64() {
    let (_, secret) = render_object(&stored(&secret()));
    assert_eq!(at(&secret, "kind"), "Secret");
    assert_eq!(at(&secret, "type"), "Opaque");
    assert_eq!(at(&secret, "data.password"), "czNjcjN0");
    assert_eq!(at(&secret, "data.blob"), "AP8Q");
}

#[test]
fn lease_micro_times_keep_microseconds() {
    let (rendering, lease) = render_object(&stored(&lease()));
    assert_eq!(at(&lease, "apiVersion"), "coordination.k8s.io/v1");
    assert_eq!(at(&lease, "kind"), "Lease");
    assert_eq!(at(&lease, "metadata.namespace"), "kube-node-lease");
    assert_eq!(at(&lease, "spec.holderIdentity"), "node-1");
    assert_eq!(at(&lease, "spec.leaseDurationSeconds"), 40);
    assert_eq!(
        at(&lease, "spec.acquireTime"),
        "2023-11-14T22:13:20.123456Z"
    );
    assert_eq!(at(&lease, "spec.renewTime"), "2023-11-14T22:13:50.000000Z");
    assert_eq!(at(&lease, "spec.leaseTransitions"), 2);
    insta::assert_snapshot!("lease", rendering.text);
}

/// One object of each further kind, with the path to a field that exercises its shape.
#[test]
fn other_built_in_kinds_render() {
    let selector = Some(meta::LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: Vec::new(),
    });
    let template = Some(core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("app"),
                image: s("busybox"),
                ..Default::default()
            }],
            ..Default::default()
        }),
    });
    let pvc = core::PersistentVolumeClaim {
        metadata: metadata("data", "default"),
        spec: Some(core::PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".to_owned()],
            resources: Some(core::VolumeResourceRequirements {
                requests: quantities(&[("storage", "5Gi")]),
                limits: BTreeMap::new(),
            }),
            // An explicit "" (no class) differs from absent (default class): both are kept.
            storage_class_name: s(""),
            ..Default::default()
        }),
        status: None,
    };
    let cases: Vec<(Vec<u8>, &str, &str, Value)> = vec![
        (
            stored(&core::Service {
                metadata: metadata("web", "default"),
                spec: Some(core::ServiceSpec {
                    ports: vec![core::ServicePort {
                        name: s("http"),
                        protocol: s("TCP"),
                        port: Some(80),
                        target_port: int_or_string_str("http"),
                        ..Default::default()
                    }],
                    selector: labels(&[("app", "web")]),
                    cluster_ip: s("10.96.0.10"),
                    r#type: s("ClusterIP"),
                    ..Default::default()
                }),
                status: None,
            }),
            "Service",
            "spec.ports.0.targetPort",
            "http".into(),
        ),
        (
            stored(&core::Namespace {
                metadata: metadata("team-a", ""),
                spec: Some(core::NamespaceSpec {
                    finalizers: vec!["kubernetes".to_owned()],
                }),
                status: Some(core::NamespaceStatus {
                    phase: s("Active"),
                    conditions: Vec::new(),
                }),
            }),
            "Namespace",
            "spec.finalizers.0",
            "kubernetes".into(),
        ),
        (
            stored(&core::Node {
                metadata: metadata("node-1", ""),
                spec: Some(core::NodeSpec {
                    pod_cidr: s("10.244.1.0/24"),
                    ..Default::default()
                }),
                status: Some(core::NodeStatus {
                    capacity: quantities(&[("cpu", "4"), ("memory", "16Gi"), ("pods", "110")]),
                    addresses: vec![core::NodeAddress {
                        r#type: s("InternalIP"),
                        address: s("192.168.1.10"),
                    }],
                    ..Default::default()
                }),
            }),
            "Node",
            "status.capacity.memory",
            "16Gi".into(),
        ),
        (
            stored(&core::Endpoints {
                metadata: metadata("web", "default"),
                subsets: vec![core::EndpointSubset {
                    addresses: vec![core::EndpointAddress {
                        ip: s("10.244.1.7"),
                        target_ref: Some(core::ObjectReference {
                            kind: s("Pod"),
                            name: s("web-7d4b9c-x2k8p"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    not_ready_addresses: Vec::new(),
                    ports: vec![core::EndpointPort {
                        name: s("http"),
                        port: Some(8080),
                        protocol: s("TCP"),
                        app_protocol: None,
                    }],
                }],
            }),
            "Endpoints",
            "subsets.0.addresses.0.targetRef.kind",
            "Pod".into(),
        ),
        (
            stored(&core::ServiceAccount {
                metadata: metadata("builder", "default"),
                secrets: vec![core::ObjectReference {
                    name: s("builder-token"),
                    ..Default::default()
                }],
                image_pull_secrets: Vec::new(),
                automount_service_account_token: Some(false),
            }),
            "ServiceAccount",
            "automountServiceAccountToken",
            false.into(),
        ),
        (
            stored(&core::Event {
                metadata: metadata("web.17a", "default"),
                involved_object: Some(core::ObjectReference {
                    kind: s("Pod"),
                    name: s("web-7d4b9c-x2k8p"),
                    ..Default::default()
                }),
                reason: s("Scheduled"),
                source: Some(core::EventSource {
                    component: s("default-scheduler"),
                    host: None,
                }),
                first_timestamp: time(1_700_000_000),
                count: Some(1),
                r#type: s("Normal"),
                event_time: Some(meta::MicroTime {
                    seconds: Some(1_700_000_000),
                    nanos: Some(5_000),
                }),
                ..Default::default()
            }),
            "Event",
            "eventTime",
            "2023-11-14T22:13:20.000005Z".into(),
        ),
        (
            stored(&core::PersistentVolume {
                metadata: metadata("pv-1", ""),
                spec: Some(core::PersistentVolumeSpec {
                    capacity: quantities(&[("storage", "10Gi")]),
                    persistent_volume_source: Some(core::PersistentVolumeSource {
                        host_path: Some(core::HostPathVolumeSource {
                            path: s("/data"),
                            r#type: None,
                        }),
                        ..Default::default()
                    }),
                    access_modes: vec!["ReadWriteOnce".to_owned()],
                    persistent_volume_reclaim_policy: s("Retain"),
                    ..Default::default()
                }),
                status: None,
            }),
            "PersistentVolume",
            "spec.hostPath.path",
            "/data".into(),
        ),
        (
            stored(&pvc),
            "PersistentVolumeClaim",
            "spec.storageClassName",
            "".into(),
        ),
        (
            stored(&apps::ReplicaSet {
                metadata: metadata("web-7d4b9c", "default"),
                spec: Some(apps::ReplicaSetSpec {
                    // Scaled to zero: a pointer to 0, stored and shown.
                    replicas: Some(0),
                    selector: selector.clone(),
                    template: template.clone(),
                    ..Default::default()
                }),
                status: None,
            }),
            "ReplicaSet",
            "spec.replicas",
            0.into(),
        ),
        (
            stored(&apps::StatefulSet {
                metadata: metadata("db", "default"),
                spec: Some(apps::StatefulSetSpec {
                    replicas: Some(2),
                    selector: selector.clone(),
                    template: template.clone(),
                    volume_claim_templates: vec![pvc.clone()],
                    service_name: s("db"),
                    ..Default::default()
                }),
                status: None,
            }),
            "StatefulSet",
            "spec.volumeClaimTemplates.0.spec.resources.requests.storage",
            "5Gi".into(),
        ),
        (
            stored(&apps::DaemonSet {
                metadata: metadata("agent", "kube-system"),
                spec: Some(apps::DaemonSetSpec {
                    selector: selector.clone(),
                    template: template.clone(),
                    update_strategy: Some(apps::DaemonSetUpdateStrategy {
                        r#type: s("RollingUpdate"),
                        rolling_update: Some(apps::RollingUpdateDaemonSet {
                            max_unavailable: int_or_string_int(1),
                            max_surge: int_or_string_int(0),
                        }),
                    }),
                    ..Default::default()
                }),
                status: None,
            }),
            "DaemonSet",
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            1.into(),
        ),
        (
            stored(&apps::ControllerRevision {
                metadata: metadata("web-5b8f", "default"),
                data: Some(RawExtension {
                    raw: Some(br#"{"spec":{"template":{"zeta":1,"alpha":2}}}"#.to_vec()),
                }),
                revision: Some(2),
            }),
            "ControllerRevision",
            "data.spec.template.zeta",
            1.into(),
        ),
        (
            stored(&discovery::EndpointSlice {
                metadata: metadata("web-abc12", "default"),
                address_type: s("IPv4"),
                endpoints: vec![discovery::Endpoint {
                    addresses: vec!["10.244.1.7".to_owned()],
                    conditions: Some(discovery::EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    node_name: s("node-1"),
                    ..Default::default()
                }],
                ports: vec![discovery::EndpointPort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(8080),
                    app_protocol: None,
                }],
            }),
            "EndpointSlice",
            "endpoints.0.conditions.ready",
            true.into(),
        ),
    ];
    for (value, kind, path, expected) in cases {
        let (rendering, document) = render_object(&value);
        assert_eq!(at(&document, "kind"), kind, "{}", rendering.text);
        assert!(
            at(&document, "metadata.name").as_str().is_some(),
            "{}",
            rendering.text
        );
        assert_eq!(
            at(&document, "metadata.creationTimestamp"),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            at(&document, path),
            &expected,
            "{kind} {path}:\n{}",
            rendering.text
        );
    }
}

#[test]
fn custom_resource_definition_schema_uses_json_names() {
    let string_schema = apiextensions::JsonSchemaProps {
        r#type: s("string"),
        ..Default::default()
    };
    let schema = apiextensions::JsonSchemaProps {
        r#type: s("object"),
        properties: BTreeMap::from([
            (
                "spec".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("object"),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    ..Default::default()
                },
            ),
            (
                "size".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("integer"),
                    default: Some(apiextensions::Json {
                        raw: Some(b"3".to_vec()),
                    }),
                    ..Default::default()
                },
            ),
            (
                "tags".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(apiextensions::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string_schema.clone())),
                        j_son_schemas: Vec::new(),
                    })),
                    x_kubernetes_list_type: s("set"),
                    ..Default::default()
                },
            ),
            (
                "labels".to_owned(),
                apiextensions::JsonSchemaProps {
                    r#type: s("object"),
                    additional_properties: Some(Box::new(apiextensions::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: Some(Box::new(string_schema)),
                    })),
                    ..Default::default()
                },
            ),
        ]),
        additional_properties: Some(Box::new(apiextensions::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        ..Default::default()
    };
    let crd = apiextensions::CustomResourceDefinition {
        metadata: metadata("widgets.example.com", ""),
        spec: Some(apiextensions::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(apiextensions::CustomResourceDefinitionNames {
                plural: s("widgets"),
                kind: s("Widget"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![apiextensions::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(apiextensions::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let (rendering, crd) = render_object(&stored(&crd));
    let schema = at(&crd, "spec.versions.0.schema.openAPIV3Schema");
    assert_eq!(
        at(
            schema,
            "properties.spec.x-kubernetes-preserve-unknown-fields"
        ),
        &Value::Bool(true),
        "{}",
        rendering.text
    );
    assert_eq!(at(schema, "properties.size.default"), 3);
    assert_eq!(at(schema, "properties.tags.items.type"), "string");
    assert_eq!(at(schema, "properties.tags.x-kubernetes-list-type"), "set");
    assert_eq!(
        at(schema, "properties.labels.additionalProperties.type"),
        "string"
    );
    assert_eq!(at(schema, "additionalProperties"), &Value::Bool(false));
}

#[test]
fn fields_unknown_to_the_schema_are_shown() {
    let mut raw = config_map().encode_to_vec();
    // Field 99, varint 1: as a newer Kubernetes might add.
    raw.extend_from_slice(&[0x98, 0x06, 0x01]);
    let (_, document) = render_object(&envelope("v1", "ConfigMap", &raw));
    assert_eq!(at(&document, "(unknown field 99)"), "980601");
    assert_eq!(at(&document, "data.port"), "8080");
}

#[test]
fn unknown_kinds_show_type_and_raw_hex() {
    let rendering = render_value(
        b"/registry/example.com/widgets/default/w",
        &envelope("example.com/v1", "Widget", b"\x0a\x03abc"),
    );
    assert_eq!(rendering.format, Format::KubernetesProtobuf);
    assert_eq!(
        rendering.text,
        "apiVersion: example.com/v1\n\
         kind: Widget\n\
         # Not decoded: no protobuf schema for example.com/v1 Widget.\n\
         # raw, 5 bytes:\n\
         # 00000000: 0a03 6162 63                             ..abc\n"
    );
}

#[test]
fn raw_that_does_not_fit_the_kind_shows_hex() {
    // A Pod whose metadata (field 1) is a varint instead of a message.
    let rendering = render_value(b"k", &envelope("v1", "Pod", b"\x08\x96\x01"));
    assert_eq!(rendering.format, Format::KubernetesProtobuf);
    assert!(rendering.text.starts_with(
        "apiVersion: v1\nkind: Pod\n# Not decoded: raw does not decode as k8s.io.api.core.v1.Pod"
    ));
    assert!(
        rendering
            .text
            .ends_with("# 00000000: 0896 01                                  ...\n")
    );
    // A string field holding invalid UTF-8.
    let rendering = render_value(b"k", &envelope("v1", "Pod", b"\x0a\x03\x0a\x01\xff"));
    assert!(
        rendering
            .text
            .contains("# Not decoded: raw does not decode"),
        "{}",
        rendering.text
    );
}

#[test]
fn malformed_envelopes_fall_back_to_hex() {
    let pod = stored(&pod("nginx:1.27"));
    // Every truncation: never a panic; either still an envelope (cut between fields) or a dump.
    for end in 0..pod.len() {
        let rendering = render_value(b"k", &pod[..end]);
        match rendering.format {
            Format::KubernetesProtobuf => {
                assert!(rendering.text.starts_with("apiVersion: v1\nkind: Pod\n"));
            }
            Format::Binary | Format::Text => {}
            other => panic!("prefix {end} rendered as {other}"),
        }
    }
    // typeMeta with a varint wire type; typeMeta missing; an envelope with a stray field.
    for value in [
        &b"k8s\0\x08\x01"[..],
        b"k8s\0\x12\x02\x0a\x00",
        b"k8s\0\x0a\x09\x0a\x02v1\x12\x03Pod\x12\x00\xf8\x01\x01",
    ] {
        let rendering = render_value(b"k", value);
        assert_eq!(rendering.format, Format::Binary, "{value:?}");
        assert!(rendering.text.starts_with("00000000: 6b38 7300"));
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (field 28) nested 5,000 deep inside a CRD, far past prost's limit of 100.
    let mut schema = Vec::new();
    for _ in 0..5_000 {
        schema = length_delimited(28, &schema);
    }
    let validation = length_delimited(1, &schema);
    let version = [length_delimited(1, b"v1"), length_delimited(4, &validation)].concat();
    let spec = length_delimited(7, &version);
    let crd = length_delimited(2, &spec);
    let rendering = render_value(
        b"k",
        &envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
    );
    assert_eq!(rendering.format, Format::KubernetesProtobuf);
    assert!(
        rendering.text.contains("# Not decoded"),
        "{}",
        rendering.text
    );

    // 100,000 nested start-group tags of an unknown field.
    let raw = [0x9b, 0x06].repeat(100_000);
    let rendering = render_value(b"k", &envelope("v1", "ConfigMap", &raw));
    assert_eq!(rendering.format, Format::KubernetesProtobuf);
    assert!(rendering.text.contains("# Not decoded"));

    // JSON nested past serde_json's limit is not JSON; it is still UTF-8 text.
    let json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(render_value(b"k", json.as_bytes()).format, Format::Text);
}

#[test]
fn deepest_decodable_object_renders() {
    // 90 schemas nested through `not` (just under prost's limit of 100 nested messages), the
    // innermost with a `default` of JSON arrays nested 120 deep (serde_json allows 128).
    let json = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let mut schema = length_delimited(8, &length_delimited(1, json.as_bytes()));
    for _ in 0..90 {
        schema = length_delimited(28, &schema);
    }
    let validation = length_delimited(1, &schema);
    let version = [length_delimited(1, b"v1"), length_delimited(4, &validation)].concat();
    let crd = length_delimited(2, &length_delimited(7, &version));
    let rendering = render_value(
        b"k",
        &envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
    );
    assert_eq!(rendering.format, Format::KubernetesProtobuf);
    assert!(
        !rendering.text.contains("# Not decoded"),
        "{}",
        rendering.text
    );
    // Deeper than yaml_serde reads back (its limit is 128 levels), so check the text itself.
    assert_eq!(rendering.text.matches("not:\n").count(), 90);
    assert_eq!(rendering.text.matches("default:").count(), 1);
}

fn length_delimited(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

// ---------------------------------------------------------------------------------------------
// JSON, text, binary

#[test]
fn custom_resource_json_becomes_yaml_in_stored_order() {
    let value = br#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"default","creationTimestamp":"2024-01-02T03:04:05Z"},"spec":{"zeta":1,"alpha":[true,null,"x"],"size":"10","note":"line one\nline two"}}
"#;
    let rendering = render_value(b"/registry/example.com/widgets/default/w", value);
    assert_eq!(rendering.format, Format::KubernetesJson);
    assert_eq!(
        rendering.text,
        "apiVersion: example.com/v1\n\
         kind: Widget\n\
         metadata:\n  \
           name: w\n  \
           namespace: default\n  \
           creationTimestamp: 2024-01-02T03:04:05Z\n\
         spec:\n  \
           zeta: 1\n  \
           alpha:\n  \
           - true\n  \
           - null\n  \
           - x\n  \
           size: '10'\n  \
           note: |-\n    \
             line one\n    \
             line two\n"
    );
    let document: Value = yaml_serde::from_str(&rendering.text).unwrap();
    assert_eq!(at(&document, "spec.size"), "10");
    assert_eq!(
        at(&document, "metadata.creationTimestamp"),
        "2024-01-02T03:04:05Z"
    );
}

#[test]
fn other_json_is_pretty_printed_in_stored_order() {
    let rendering = render_value(
        b"/config/app",
        br#"{"z":1,"a":{"nested":[1,2.5,"s"]},"m":null}"#,
    );
    assert_eq!(rendering.format, Format::Json);
    assert_eq!(
        rendering.text,
        "{\n  \"z\": 1,\n  \"a\": {\n    \"nested\": [\n      1,\n      2.5,\n      \"s\"\n    ]\n  },\n  \"m\": null\n}\n"
    );
    assert_eq!(render_value(b"k", b"[]").text, "[]\n");
}

#[test]
fn text_is_shown_as_is() {
    let rendering = render_value(b"/config/motd", "héllo\n\twörld\n".as_bytes());
    assert_eq!(rendering.format, Format::Text);
    assert_eq!(rendering.text, "héllo\n\twörld\n");
    assert_eq!(render_value(b"k", b"{not json").format, Format::Text);
}

#[test]
fn binary_is_a_capped_hex_dump() {
    let rendering = render_value(b"k", b"\x00\x01\x02\xffabc");
    assert_eq!(rendering.format, Format::Binary);
    assert_eq!(
        rendering.text,
        "00000000: 0001 02ff 6162 63                        ....abc\n"
    );
    let huge = vec![0u8; 1 << 20];
    let rendering = render_value(b"k", &huge);
    assert_eq!(rendering.format, Format::Binary);
    assert_eq!(rendering.text.lines().count(), 257);
    assert!(
        rendering
            .text
            .ends_with(&format!("… {} more bytes\n", (1 << 20) - 4096))
    );
}

#[test]
fn keys_render_unambiguously() {
    assert_eq!(
        render_key(b"/registry/pods/default/web"),
        "/registry/pods/default/web"
    );
    assert_eq!(render_key(b"/bin/\x00\xff"), "/bin/\\x00\\xff");
    assert_eq!(render_key(b"back\\slash"), "back\\\\slash");
}

// ---------------------------------------------------------------------------------------------
// Diffs

#[test]
fn diff_of_two_pod_revisions() {
    let old = render_value(b"k", &stored(&pod("nginx:1.27")));
    let new = render_value(b"k", &stored(&pod("nginx:1.28")));
    let diff = unified_diff(Some(&old), Some(&new), "rev 41", "rev 42", false);
    insta::assert_snapshot!("pod_diff", diff);
    assert!(diff.starts_with("--- rev 41\n+++ rev 42\n@@ "));
    assert!(diff.contains("\n-    image: nginx:1.27\n+    image: nginx:1.28\n"));
    assert_eq!(
        diff.lines()
            .filter(|line| line.starts_with(['-', '+']))
            .count(),
        4
    );

    let coloured = unified_diff(Some(&old), Some(&new), "rev 41", "rev 42", true);
    assert!(coloured.contains("\x1b[31m-    image: nginx:1.27\x1b[0m\n"));
    assert!(coloured.contains("\x1b[32m+    image: nginx:1.28\x1b[0m\n"));
    assert!(coloured.contains("\x1b[36m@@ "));
    assert!(!diff.contains('\x1b'));
}

#[test]
fn diff_against_absent_values() {
    let created = render_value(b"k", b"a\nb\n");
    assert_eq!(
        unified_diff(None, Some(&created), "(absent)", "rev 1", false),
        "--- (absent)\n+++ rev 1\n@@ -0,0 +1,2 @@\n+a\n+b\n"
    );
    assert_eq!(
        unified_diff(Some(&created), None, "rev 1", "rev 2 (deleted)", true),
        "\x1b[1m--- rev 1\x1b[0m\n\x1b[1m+++ rev 2 (deleted)\x1b[0m\n\x1b[36m@@ -1,2 +0,0 @@\x1b[0m\n\x1b[31m-a\x1b[0m\n\x1b[31m-b\x1b[0m\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests: no input panics, loops or claims a format it does not have.

fn assert_consistent(value: &[u8], rendering: &Rendering) {
    match rendering.format {
        Format::Binary => {
            assert!(value.is_empty() || rendering.text.starts_with("00000000: "));
        }
        Format::Text => assert_eq!(rendering.text.as_bytes(), value),
        Format::KubernetesProtobuf => {
            assert!(value.starts_with(MAGIC));
            assert!(rendering.text.starts_with("apiVersion: "));
        }
        Format::Json | Format::KubernetesJson => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_after_the_magic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let value = [MAGIC, &tail].concat();
        let rendering = render_value(b"/registry/x", &value);
        prop_assert!(matches!(rendering.format, Format::KubernetesProtobuf | Format::Binary));
        assert_consistent(&value, &rendering);
    }

    #[test]
    fn random_objects_in_valid_envelopes(
        kind in proptest::sample::select(vec![
            ("v1", "Pod"), ("v1", "ConfigMap"), ("v1", "Secret"), ("apps/v1", "Deployment"),
            ("coordination.k8s.io/v1", "Lease"), ("discovery.k8s.io/v1", "EndpointSlice"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("example.com/v1", "Widget"),
        ]),
        raw in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let value = envelope(kind.0, kind.1, &raw);
        let rendering = render_value(b"/registry/x", &value);
        prop_assert_eq!(rendering.format, Format::KubernetesProtobuf);
        assert_consistent(&value, &rendering);
    }

    #[test]
    fn mutated_pods(edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8)) {
        let mut value = stored(&pod("nginx:1.27"));
        for (index, byte) in edits {
            let position = index.index(value.len());
            value[position] = byte;
        }
        let rendering = render_value(b"/registry/pods/default/web", &value);
        assert_consistent(&value, &rendering);
    }

    #[test]
    fn any_bytes(value in proptest::collection::vec(any::<u8>(), 0..256)) {
        let rendering = render_value(b"k", &value);
        assert_consistent(&value, &rendering);
        let key = render_key(&value);
        prop_assert!(!key.chars().any(char::is_control));
    }
}
