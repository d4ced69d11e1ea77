//! YAML text for documents (Kubernetes objects, from JSON or protobuf), in document key order.
//!
//! The emitter is `yaml_serde`, the YAML organisation's maintained continuation of `serde_yaml`: it
//! quotes strings that would otherwise read as another type (`'123'`, `'true'`, `'null'`) and writes
//! multi-line strings as literal blocks, as `kubectl get -o yaml` does. It follows YAML 1.2, so the
//! YAML 1.1 booleans (`on`, `yes`, `no`) stay unquoted strings, where kubectl would quote them.

use yaml_serde::Value;

/// The document as YAML ending in a newline; `None` if the emitter refuses it (it does not for
/// documents built from JSON or protobuf, which hold no YAML tags).
pub(crate) fn to_yaml(document: &Value) -> Option<String> {
    yaml_serde::to_string(document).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_strings_that_look_like_other_types() {
        let document: Value = serde_json::from_str(
            r#"{"kind": "ConfigMap", "data": {"port": "8080", "on": "true", "none": "null", "n": 7}}"#,
        )
        .unwrap();
        let yaml = to_yaml(&document).unwrap();
        assert_eq!(
            yaml,
            "kind: ConfigMap\ndata:\n  port: '8080'\n  on: 'true'\n  none: 'null'\n  n: 7\n"
        );
        assert_eq!(yaml_serde::from_str::<Value>(&yaml).unwrap(), document);
    }

    #[test]
    fn multi_line_strings_are_blocks() {
        let document: Value =
            serde_json::from_str(r#"{"script": "echo one\necho two\n"}"#).unwrap();
        assert_eq!(
            to_yaml(&document).unwrap(),
            "script: |\n  echo one\n  echo two\n"
        );
    }
}
