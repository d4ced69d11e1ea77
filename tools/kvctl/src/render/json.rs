//! JSON values: parsing into an order-keeping document, telling Kubernetes objects apart, and
//! pretty-printing.
//!
//! Documents are [`yaml_serde::Value`]s, whose mappings keep insertion order; that keeps the stored
//! key order without turning on `serde_json`'s workspace-wide `preserve_order` feature.

use yaml_serde::Value;

/// Parses `bytes` as a JSON object or array (scalars are left to the text rendering). Duplicate keys
/// make the parse fail, so such a value is shown as stored rather than with one duplicate dropped.
pub(crate) fn parse(bytes: &[u8]) -> Option<Value> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// Whether a document is a Kubernetes object: a mapping with string `apiVersion` and `kind`.
pub(crate) fn is_kubernetes_object(document: &Value) -> bool {
    let Value::Mapping(mapping) = document else {
        return false;
    };
    ["apiVersion", "kind"]
        .iter()
        .all(|field| matches!(mapping.get(field), Some(Value::String(text)) if !text.is_empty()))
}

/// Pretty JSON (two-space indent) ending in a newline, keys in document order.
pub(crate) fn to_pretty_json(document: &Value) -> Option<String> {
    let mut text = serde_json::to_string_pretty(document).ok()?;
    text.push('\n');
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order() {
        let document = parse(br#"{"z": 1, "a": {"y": true, "b": null}, "m": [1.5, "s"]}"#).unwrap();
        assert_eq!(
            to_pretty_json(&document).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": {\n    \"y\": true,\n    \"b\": null\n  },\n  \"m\": [\n    1.5,\n    \"s\"\n  ]\n}\n"
        );
    }

    #[test]
    fn only_objects_and_arrays() {
        assert!(parse(b"  [1]\n").is_some());
        assert!(parse(b"1").is_none());
        assert!(parse(b"\"s\"").is_none());
        assert!(parse(b"{").is_none());
        assert!(parse(br#"{"a": 1, "a": 2}"#).is_none());
    }

    #[test]
    fn recognises_kubernetes_objects() {
        let object = parse(br#"{"apiVersion": "example.com/v1", "kind": "Widget"}"#).unwrap();
        assert!(is_kubernetes_object(&object));
        for other in [
            &br#"{"apiVersion": "v1"}"#[..],
            br#"{"apiVersion": "v1", "kind": 3}"#,
            br#"{"apiVersion": "v1", "kind": ""}"#,
            br#"[{"apiVersion": "v1", "kind": "Pod"}]"#,
        ] {
            assert!(!is_kubernetes_object(&parse(other).unwrap()));
        }
    }
}
