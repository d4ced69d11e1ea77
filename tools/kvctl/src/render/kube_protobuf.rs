//! Objects that kube-apiserver stored in protobuf, shown as YAML.
//!
//! kube-apiserver writes built-in types to etcd as a 4-byte magic followed by a
//! `runtime.Unknown` envelope whose `raw` field holds the object's own protobuf encoding:
//!
//! ```text
//!   6b 38 73 00                          "k8s\0"
//!   runtime.Unknown {
//!     1: typeMeta { 1: apiVersion "apps/v1", 2: kind "Deployment" }
//!     2: raw             <apps.v1.Deployment { 1: metadata, 2: spec, 3: status }>
//!     3: contentEncoding ""   (never set by kube-apiserver)
//!     4: contentType     ""   (implies application/vnd.kubernetes.protobuf)
//!   }
//! ```
//!
//! The envelope's `apiVersion`/`kind` pick the message (see `kube_schema`), `raw` is decoded with
//! it and shown in the API's JSON form (see `kube_object`), led by `apiVersion` and `kind` as in
//! `kubectl get -o yaml`. A value whose envelope is valid but whose object cannot be decoded (a kind
//! the schema does not know, bytes that do not fit it) is shown as its `apiVersion`, `kind`, the
//! reason and a hex dump of `raw`. A value that starts with the magic but has no valid envelope is
//! not claimed at all, and so ends up as a hex dump of the whole value.

use std::fmt::Write as _;

use prost_reflect::DynamicMessage;
use yaml_serde::{Mapping, Value};

use super::{hex, kube_object, kube_schema, yaml};

/// The prefix kube-apiserver puts before every protobuf-encoded object.
pub(crate) const MAGIC: &[u8] = b"k8s\0";

const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The decoded `runtime.Unknown` envelope.
struct Envelope {
    api_version: String,
    kind: String,
    raw: Vec<u8>,
    content_encoding: String,
    content_type: String,
}

/// Why the object inside a valid envelope is shown as hex instead of YAML.
#[derive(Debug, thiserror::Error)]
enum NotDecoded {
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("content type {0:?} is not supported")]
    ContentType(String),
    #[error("no protobuf schema for {api_version} {kind}")]
    NoSchema { api_version: String, kind: String },
    #[error("raw does not decode as {message}: {source}")]
    Decode {
        message: String,
        source: prost::DecodeError,
    },
    #[error("the YAML emitter refused it")]
    Yaml,
}

/// The value as YAML, if it is a protobuf envelope written by kube-apiserver (see the module docs).
pub(crate) fn render(value: &[u8]) -> Option<String> {
    let envelope = envelope(value)?;
    let rendered = decode_object(&envelope)
        .and_then(|document| yaml::to_yaml(&document).ok_or(NotDecoded::Yaml));
    Some(rendered.unwrap_or_else(|reason| opaque(&envelope, &reason)))
}

/// The envelope after the magic: it must decode, name a non-empty `apiVersion` and `kind`, and hold
/// no fields `runtime.Unknown` does not have; random bytes rarely pass all three.
fn envelope(value: &[u8]) -> Option<Envelope> {
    let body = value.strip_prefix(MAGIC)?;
    let unknown = DynamicMessage::decode(kube_schema::message(kube_schema::UNKNOWN)?, body).ok()?;
    let type_meta = unknown.get_field_by_name("typeMeta")?;
    let type_meta = type_meta.as_message()?;
    if unknown.unknown_fields().next().is_some() || type_meta.unknown_fields().next().is_some() {
        return None;
    }
    let text = |message: &DynamicMessage, name: &str| {
        message
            .get_field_by_name(name)
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let envelope = Envelope {
        api_version: text(type_meta, "apiVersion"),
        kind: text(type_meta, "kind"),
        raw: unknown
            .get_field_by_name("raw")
            .and_then(|value| value.as_bytes().map(|raw| raw.to_vec()))
            .unwrap_or_default(),
        content_encoding: text(&unknown, "contentEncoding"),
        content_type: text(&unknown, "contentType"),
    };
    (!envelope.api_version.is_empty() && !envelope.kind.is_empty()).then_some(envelope)
}

/// The object in `raw` as a document led by `apiVersion` and `kind`, or why it cannot be shown.
fn decode_object(envelope: &Envelope) -> Result<Value, NotDecoded> {
    let Envelope {
        api_version, kind, ..
    } = envelope;
    if !envelope.content_encoding.is_empty() {
        return Err(NotDecoded::ContentEncoding(
            envelope.content_encoding.clone(),
        ));
    }
    if !envelope.content_type.is_empty() && envelope.content_type != PROTOBUF_CONTENT_TYPE {
        return Err(NotDecoded::ContentType(envelope.content_type.clone()));
    }
    let message =
        kube_schema::object_message(api_version, kind).ok_or_else(|| NotDecoded::NoSchema {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let full_name = message.full_name().to_owned();
    let object = DynamicMessage::decode(message, envelope.raw.as_slice()).map_err(|source| {
        NotDecoded::Decode {
            message: full_name,
            source,
        }
    })?;

    let mut document = Mapping::new();
    document.insert("apiVersion".into(), api_version.as_str().into());
    document.insert("kind".into(), kind.as_str().into());
    if let Value::Mapping(fields) = kube_object::message_to_document(&object) {
        document.extend(fields);
    }
    Ok(Value::Mapping(document))
}

/// The envelope's type, why its object is not shown, and `raw` as a hex dump in YAML comments.
fn opaque(envelope: &Envelope, reason: &NotDecoded) -> String {
    let mut head = Mapping::new();
    head.insert("apiVersion".into(), envelope.api_version.as_str().into());
    head.insert("kind".into(), envelope.kind.as_str().into());
    let mut text = yaml::to_yaml(&Value::Mapping(head)).unwrap_or_default();
    let reason: String = reason
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(text, "# Not decoded: {reason}.");
    let _ = writeln!(text, "# raw, {} bytes:", envelope.raw.len());
    for line in hex::dump(&envelope.raw).lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a length-delimited field.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope_bytes(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [MAGIC.to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_config_map() {
        // ConfigMap { metadata { name "cm" }, data { "k": "v" } }
        let raw = [
            field(1, &field(1, b"cm")),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let text = render(&envelope_bytes("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            text,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: v\n"
        );
    }

    #[test]
    fn unknown_kinds_show_raw_as_hex() {
        let text = render(&envelope_bytes("example.com/v1", "Widget", b"\x0a\x02hi")).unwrap();
        assert_eq!(
            text,
            "apiVersion: example.com/v1\nkind: Widget\n\
             # Not decoded: no protobuf schema for example.com/v1 Widget.\n\
             # raw, 4 bytes:\n\
             # 00000000: 0a02 6869                                ..hi\n"
        );
    }

    #[test]
    fn undecodable_raw_says_why() {
        // Field 1 (metadata) with a varint wire type where a message belongs.
        let text = render(&envelope_bytes("v1", "Pod", b"\x08\x01")).unwrap();
        assert!(text.starts_with("apiVersion: v1\nkind: Pod\n# Not decoded: raw does not decode as k8s.io.api.core.v1.Pod"));
    }

    #[test]
    fn invalid_envelopes_are_not_claimed() {
        assert!(render(b"k8s\0").is_none());
        assert!(render(b"k8s\0\x0a\x05\x0a\x02v1").is_none());
        assert!(render(&envelope_bytes("", "Pod", b"")).is_none());
        assert!(render(&[envelope_bytes("v1", "Pod", b""), field(9, b"x")].concat()).is_none());
        assert!(render(b"not protobuf").is_none());
    }
}
