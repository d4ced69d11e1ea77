//! Readable renderings of stored keys and values, and unified diffs between two renderings.
//!
//! A value is tried against each format in turn; the first that fits wins:
//!
//! ```text
//!   value bytes
//!       │
//!       ├─ starts with "k8s\0" and the runtime.Unknown envelope decodes ──▶ KubernetesProtobuf (YAML)
//!       ├─ JSON object or array with string apiVersion and kind ──────────▶ KubernetesJson (YAML)
//!       ├─ any other JSON object or array ────────────────────────────────▶ Json (pretty, key order kept)
//!       ├─ UTF-8 without control characters other than \t \n \r ─────────▶ Text (as is)
//!       └─ anything else ─────────────────────────────────────────────────▶ Binary (xxd-style hex dump)
//! ```
//!
//! Renderings are deterministic (same bytes, same text), so that diffing two renderings shows what
//! changed between two revisions. Nothing here panics or fails on any input: a value that looks like
//! a format but does not decode falls through to the next one, down to the hex dump.

mod diff;
mod hex;
mod json;
mod key;
mod kube_object;
mod kube_protobuf;
mod kube_schema;
mod yaml;

use std::fmt;

use serde::Serialize;

pub use diff::unified_diff;
pub use key::render_key;

/// The format a value was recognised as, and so how its [`Rendering::text`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// UTF-8 text, shown as stored.
    Text,
    /// JSON that is not a Kubernetes object, pretty-printed with its keys in stored order.
    Json,
    /// A Kubernetes object stored as JSON (custom resources), shown as YAML in stored key order.
    KubernetesJson,
    /// A Kubernetes object stored by kube-apiserver as protobuf (`k8s\0` + `runtime.Unknown`),
    /// shown as YAML in the API's JSON field naming.
    KubernetesProtobuf,
    /// Anything else, shown as a hex dump.
    Binary,
}

impl Format {
    /// The format's name as shown to users and in JSON output (`kubernetes-protobuf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::KubernetesJson => "kubernetes-json",
            Format::KubernetesProtobuf => "kubernetes-protobuf",
            Format::Binary => "binary",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value made readable: the format it was recognised as and its text in that format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendering {
    pub format: Format,
    pub text: String,
}

/// Renders a stored value for people.
///
/// The key is accepted so that callers need not change if a format ever depends on where a value
/// is stored; today the bytes alone decide (see the module docs).
pub fn render_value(_key: &[u8], value: &[u8]) -> Rendering {
    if let Some(text) = kube_protobuf::render(value) {
        return Rendering {
            format: Format::KubernetesProtobuf,
            text,
        };
    }
    if let Some(document) = json::parse(value) {
        if json::is_kubernetes_object(&document)
            && let Some(text) = yaml::to_yaml(&document)
        {
            return Rendering {
                format: Format::KubernetesJson,
                text,
            };
        }
        if let Some(text) = json::to_pretty_json(&document) {
            return Rendering {
                format: Format::Json,
                text,
            };
        }
    }
    if let Some(text) = as_text(value) {
        return Rendering {
            format: Format::Text,
            text: text.to_owned(),
        };
    }
    Rendering {
        format: Format::Binary,
        text: hex::dump(value),
    }
}

/// The value as text, if it is UTF-8 free of control characters that would garble a terminal or
/// hide bytes (tabs and line breaks are fine).
fn as_text(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_value_is_empty_text() {
        let rendering = render_value(b"k", b"");
        assert_eq!(rendering.format, Format::Text);
        assert_eq!(rendering.text, "");
    }

    #[test]
    fn json_scalars_stay_text() {
        for value in [&b"42"[..], b"true", b"\"quoted\"", b"null"] {
            assert_eq!(render_value(b"k", value).format, Format::Text);
        }
    }

    #[test]
    fn control_characters_make_binary() {
        assert_eq!(render_value(b"k", b"a\x1b[31mred").format, Format::Binary);
        assert_eq!(render_value(b"k", b"nul\0").format, Format::Binary);
        assert_eq!(render_value(b"k", b"tab\tline\r\n").format, Format::Text);
    }

    #[test]
    fn format_names_match_serde() {
        for format in [
            Format::Text,
            Format::Json,
            Format::KubernetesJson,
            Format::KubernetesProtobuf,
            Format::Binary,
        ] {
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{format}\""));
        }
    }
}
