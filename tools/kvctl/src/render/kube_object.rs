//! Decoded Kubernetes protobuf messages as documents in the API's JSON form (what
//! `kubectl get -o json` shows), the reverse of what kube-apiserver's protobuf serializer did.
//!
//! Field names are the proto names, which Kubernetes generates from the JSON names (`podIP`,
//! `resourceVersion`); the few JSON names that are not valid proto names (`$ref`,
//! `x-kubernetes-…` in CRD schemas) are mapped back. Fields appear in the order of the Go struct,
//! which is the order they are declared in the `.proto` (not their field numbers). Map entries are
//! sorted by key, as Go's JSON encoder sorts them.
//!
//! Go structs embedded with `json:",inline"` are a field of their own in protobuf but have their
//! fields spliced into the parent in JSON: a `Probe` holds `handler { httpGet }` in protobuf and
//! `httpGet` in JSON. The protos do not say which fields those are, so [`INLINE_FIELDS`] lists them.
//!
//! Types with their own JSON form:
//!
//! | message                                | JSON                                                 |
//! |----------------------------------------|------------------------------------------------------|
//! | meta/v1 `Time`, `MicroTime`            | RFC 3339 string (seconds, microseconds), zero → null |
//! | meta/v1 `Duration`                     | Go duration string (`1h30m0s`)                       |
//! | resource `Quantity`                    | its string (`100m`, `1Gi`)                           |
//! | intstr `IntOrString`                   | number or string                                     |
//! | runtime `RawExtension`, `FieldsV1`, CRD `JSON` | the embedded JSON                            |
//! | CRD `JSONSchemaPropsOr{Array,Bool,StringArray}` | the schema, or the array or bool         |
//! | `Verbs`, `ExtraValue`                  | array of strings                                     |
//! | any `bytes` field (Secret `data`)      | base64 string                                        |
//!
//! Every field present in the stored bytes is shown. Go writes non-pointer fields even when empty,
//! and protobuf does not record `omitempty`, so objects written by kube-apiserver show fields such
//! as `generateName: ""` that the JSON form leaves out. Fields the schema does not know (written by
//! a newer Kubernetes) are not dropped: each is shown as `(unknown field N)` with the hex of its
//! wire encoding (tag included).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat};
use prost_reflect::{
    DynamicMessage, FieldDescriptor, MapKey, MessageDescriptor, ReflectMessage as _, Value as Field,
};
use yaml_serde::{Mapping, Value};

use super::hex;

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";
const APIEXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.";

/// `(message, field)` of every embedded, JSON-inlined struct in the vendored API groups, by simple
/// message name (the same in every group and version that has it). Found by reading the Go types
/// behind each proto field named after its type; a test checks that every entry exists.
pub(crate) const INLINE_FIELDS: &[(&str, &str)] = &[
    // core/v1
    ("Volume", "volumeSource"),
    ("PersistentVolumeSpec", "persistentVolumeSource"),
    ("EphemeralContainer", "ephemeralContainerCommon"),
    ("Probe", "handler"),
    ("ConfigMapEnvSource", "localObjectReference"),
    ("ConfigMapKeySelector", "localObjectReference"),
    ("ConfigMapProjection", "localObjectReference"),
    ("ConfigMapVolumeSource", "localObjectReference"),
    ("SecretEnvSource", "localObjectReference"),
    ("SecretKeySelector", "localObjectReference"),
    ("SecretProjection", "localObjectReference"),
    // networking/v1, networking/v1beta1, extensions/v1beta1
    ("IngressRule", "ingressRuleValue"),
    // admissionregistration/*
    ("RuleWithOperations", "rule"),
    ("NamedRuleWithOperations", "ruleWithOperations"),
    // resource/*
    ("DeviceAllocationConfiguration", "deviceConfiguration"),
    ("DeviceClaimConfiguration", "deviceConfiguration"),
    ("DeviceClassConfiguration", "deviceConfiguration"),
];

/// The message as a JSON-like document.
pub(crate) fn message_to_document(message: &DynamicMessage) -> Value {
    let full_name = message.descriptor().full_name().to_owned();
    special_form(&full_name, message).unwrap_or_else(|| plain_object(message))
}

/// The JSON form of messages that Go marshals by hand; `None` if `message` is not one of them, or
/// holds values its JSON form cannot show (then the plain object is shown instead).
fn special_form(full_name: &str, message: &DynamicMessage) -> Option<Value> {
    if let Some(name) = full_name.strip_prefix(META) {
        return match name {
            "Time" => time(message, SecondsFormat::Secs),
            "MicroTime" => time(message, SecondsFormat::Micros),
            "Duration" => Some(Value::String(go_duration(int(message, "duration")?))),
            "FieldsV1" => Some(embedded_json(message, "Raw")),
            "Verbs" => Some(strings(message, "items")),
            _ => None,
        };
    }
    if let Some(rest) = full_name.strip_prefix(APIEXTENSIONS) {
        let name = rest.split_once('.').map_or(rest, |(_version, name)| name);
        return match name {
            "JSON" => Some(embedded_json(message, "raw")),
            "JSONSchemaPropsOrArray" => {
                schemas_or(message, "schema", list_field(message, "jSONSchemas"))
            }
            "JSONSchemaPropsOrBool" => {
                // Go: a schema means `allows: true` and is what is shown; else the bool.
                if has(message, "schema") {
                    field_value(message, "schema")
                } else {
                    Some(Value::Bool(boolean(message, "allows")))
                }
            }
            "JSONSchemaPropsOrStringArray" => {
                schemas_or(message, "schema", list_field(message, "property"))
            }
            _ => None,
        };
    }
    match full_name {
        "k8s.io.apimachinery.pkg.api.resource.Quantity"
        | "k8s.io.apimachinery.pkg.api.resource.QuantityValue" => Some(Value::String(
            string(message, "string").unwrap_or_else(|| "0".to_owned()),
        )),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => match int(message, "type")? {
            0 => Some(Value::Number(int(message, "intVal")?.into())),
            1 => Some(Value::String(string(message, "strVal").unwrap_or_default())),
            _ => None,
        },
        "k8s.io.apimachinery.pkg.runtime.RawExtension" => Some(embedded_json(message, "raw")),
        _ if full_name.starts_with("k8s.io.api.") && full_name.ends_with(".ExtraValue") => {
            Some(strings(message, "items"))
        }
        _ => None,
    }
}

/// Every present field, in declaration order, then any unknown fields.
fn plain_object(message: &DynamicMessage) -> Value {
    let descriptor = message.descriptor();
    let rename_schema_fields =
        descriptor.full_name().starts_with(APIEXTENSIONS) && descriptor.name() == "JSONSchemaProps";
    let mut object = Mapping::new();
    for declared in &descriptor.descriptor_proto().field {
        let number = declared
            .number
            .and_then(|number| u32::try_from(number).ok());
        let Some(field) = number.and_then(|number| descriptor.get_field(number)) else {
            continue;
        };
        if !message.has_field(&field) {
            continue;
        }
        let document = field_to_document(&field, &message.get_field(&field));
        if INLINE_FIELDS.contains(&(descriptor.name(), field.name()))
            && let Value::Mapping(inlined) = document
        {
            object.extend(inlined);
            continue;
        }
        let name = if rename_schema_fields {
            schema_json_name(field.name())
        } else {
            Cow::Borrowed(field.name())
        };
        object.insert(Value::String(name.into_owned()), document);
    }
    for unknown in message.unknown_fields() {
        let mut encoded = Vec::new();
        unknown.encode(&mut encoded);
        object.insert(
            Value::String(format!("(unknown field {})", unknown.number())),
            Value::String(hex::plain(&encoded)),
        );
    }
    Value::Mapping(object)
}

fn field_to_document(field: &FieldDescriptor, value: &Field) -> Value {
    match value {
        Field::Bool(value) => Value::Bool(*value),
        Field::I32(value) | Field::EnumNumber(value) => Value::Number((*value).into()),
        Field::I64(value) => Value::Number((*value).into()),
        Field::U32(value) => Value::Number((*value).into()),
        Field::U64(value) => Value::Number((*value).into()),
        Field::F32(value) => Value::Number(f64::from(*value).into()),
        Field::F64(value) => Value::Number((*value).into()),
        Field::String(value) => Value::String(value.clone()),
        Field::Bytes(value) => Value::String(BASE64.encode(value)),
        Field::Message(message) => message_to_document(message),
        Field::List(items) => Value::Sequence(
            items
                .iter()
                .map(|item| field_to_document(field, item))
                .collect(),
        ),
        Field::Map(entries) => {
            let value_field = field
                .kind()
                .as_message()
                .map(MessageDescriptor::map_entry_value_field);
            let mut entries: Vec<_> = entries.iter().collect();
            entries.sort_by(|(a, _), (b, _)| map_key_order(a, b));
            let mut object = Mapping::new();
            for (key, value) in entries {
                let value = match &value_field {
                    Some(value_field) => field_to_document(value_field, value),
                    None => field_to_document(field, value),
                };
                object.insert(Value::String(map_key_text(key)), value);
            }
            Value::Mapping(object)
        }
    }
}

fn map_key_order(a: &MapKey, b: &MapKey) -> std::cmp::Ordering {
    match (a, b) {
        (MapKey::String(a), MapKey::String(b)) => a.cmp(b),
        _ => map_key_text(a).cmp(&map_key_text(b)),
    }
}

fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(key) => key.to_string(),
        MapKey::I32(key) => key.to_string(),
        MapKey::I64(key) => key.to_string(),
        MapKey::U32(key) => key.to_string(),
        MapKey::U64(key) => key.to_string(),
        MapKey::String(key) => key.clone(),
    }
}

/// `metav1.Time`/`MicroTime`: the zero time is encoded as an empty message and shown as null.
fn time(message: &DynamicMessage, precision: SecondsFormat) -> Option<Value> {
    if !has(message, "seconds") && !has(message, "nanos") {
        return Some(Value::Null);
    }
    let seconds = int(message, "seconds")?;
    let nanos = u32::try_from(int(message, "nanos")?)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)?;
    let time = DateTime::from_timestamp(seconds, nanos)?;
    Some(Value::String(time.to_rfc3339_opts(precision, true)))
}

/// `time.Duration.String()` from Go: `1h2m3.5s`, `1.5µs`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if magnitude < 1_000_000_000 {
        let (unit, digits) = match magnitude {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        return format!("{sign}{}{unit}", decimal(magnitude, digits));
    }
    let seconds = magnitude / 1_000_000_000;
    let mut text = format!(
        "{}s",
        decimal(seconds % 60 * 1_000_000_000 + magnitude % 1_000_000_000, 9)
    );
    let minutes = seconds / 60;
    if minutes > 0 {
        text = format!("{}m{text}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            text = format!("{hours}h{text}");
        }
    }
    format!("{sign}{text}")
}

/// `value / 10^digits` with its fraction, trailing zeros (and a bare point) left out.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let fraction = format!("{:0width$}", value % scale, width = digits as usize);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        (value / scale).to_string()
    } else {
        format!("{}.{fraction}", value / scale)
    }
}

/// Bytes holding JSON: the parsed document; absent is null; anything else is shown as a string
/// (UTF-8) or base64, since the stored bytes are not what Go would write.
fn embedded_json(message: &DynamicMessage, field: &str) -> Value {
    let Some(bytes) = bytes(message, field) else {
        return Value::Null;
    };
    if bytes.is_empty() {
        return Value::Null;
    }
    if let Ok(document) = serde_json::from_slice::<Value>(&bytes) {
        return document;
    }
    match String::from_utf8(bytes.to_vec()) {
        Ok(text) => Value::String(text),
        Err(_) => Value::String(BASE64.encode(&bytes)),
    }
}

/// The CRD schema unions: the list if it has items, else the schema (null if absent).
fn schemas_or(message: &DynamicMessage, schema: &str, list: Option<Value>) -> Option<Value> {
    match list {
        Some(list) => Some(list),
        None if has(message, schema) => field_value(message, schema),
        None => Some(Value::Null),
    }
}

/// JSON names of `JSONSchemaProps` fields that are not valid proto names.
fn schema_json_name(name: &str) -> Cow<'_, str> {
    match name {
        "ref" => Cow::Borrowed("$ref"),
        "schema" => Cow::Borrowed("$schema"),
        _ => match name.strip_prefix("xKubernetes") {
            Some(rest) => {
                let mut kebab = String::from("x-kubernetes");
                for c in rest.chars() {
                    if c.is_ascii_uppercase() {
                        kebab.push('-');
                        kebab.push(c.to_ascii_lowercase());
                    } else {
                        kebab.push(c);
                    }
                }
                Cow::Owned(kebab)
            }
            None => Cow::Borrowed(name),
        },
    }
}

fn field(message: &DynamicMessage, name: &str) -> Option<FieldDescriptor> {
    message.descriptor().get_field_by_name(name)
}

fn has(message: &DynamicMessage, name: &str) -> bool {
    field(message, name).is_some_and(|field| message.has_field(&field))
}

fn field_value(message: &DynamicMessage, name: &str) -> Option<Value> {
    let field = field(message, name)?;
    Some(field_to_document(&field, &message.get_field(&field)))
}

/// A repeated field as a sequence, `None` if absent or empty.
fn list_field(message: &DynamicMessage, name: &str) -> Option<Value> {
    has(message, name)
        .then(|| field_value(message, name))
        .flatten()
}

/// A wrapper of a string list (`Verbs`, `ExtraValue`): the list, empty if absent.
fn strings(message: &DynamicMessage, name: &str) -> Value {
    list_field(message, name).unwrap_or(Value::Sequence(Vec::new()))
}

fn int(message: &DynamicMessage, name: &str) -> Option<i64> {
    let field = field(message, name)?;
    match *message.get_field(&field) {
        Field::I32(value) => Some(i64::from(value)),
        Field::I64(value) => Some(value),
        _ => None,
    }
}

fn boolean(message: &DynamicMessage, name: &str) -> bool {
    field(message, name).is_some_and(|field| message.get_field(&field).as_bool() == Some(true))
}

fn string(message: &DynamicMessage, name: &str) -> Option<String> {
    let field = field(message, name)?;
    message.get_field(&field).as_str().map(str::to_owned)
}

fn bytes(message: &DynamicMessage, name: &str) -> Option<bytes::Bytes> {
    let field = field(message, name)?;
    if !message.has_field(&field) {
        return None;
    }
    message.get_field(&field).as_bytes().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_in_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_000_000, "1ms"),
            (2_500_000, "2.5ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-5_000_000_000, "-5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(go_duration(nanos), text, "{nanos}ns");
        }
    }

    #[test]
    fn inline_fields_exist() {
        let pool = prost_reflect::DescriptorPool::decode(
            include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds")).as_slice(),
        )
        .unwrap();
        for (message, field) in INLINE_FIELDS {
            let found = pool.all_messages().any(|descriptor| {
                descriptor.name() == *message
                    && descriptor.get_field_by_name(field).is_some_and(|field| {
                        field.kind().as_message().is_some() && !field.is_list()
                    })
            });
            assert!(found, "no message field {message}.{field}");
        }
    }

    #[test]
    fn schema_names_map_back_to_json() {
        assert_eq!(schema_json_name("ref"), "$ref");
        assert_eq!(schema_json_name("schema"), "$schema");
        assert_eq!(
            schema_json_name("xKubernetesPreserveUnknownFields"),
            "x-kubernetes-preserve-unknown-fields"
        );
        assert_eq!(
            schema_json_name("xKubernetesListMapKeys"),
            "x-kubernetes-list-map-keys"
        );
        assert_eq!(schema_json_name("properties"), "properties");
    }
}
