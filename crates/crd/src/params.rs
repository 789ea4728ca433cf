//! An action's parameters, typed: each has its type and the action types it
//! belongs to, so the API server refuses a misspelt, misplaced or missing
//! parameter at `kubectl apply`, not the coordinator later.
//!
//! Before they were typed, parameters were a map of strings (`maxReplicas:
//! "6"`, `limits.memoryBytes: "805306368"`). Such stored objects still read
//! the same: a number may be written as a numeric string, and the dotted
//! resource keys are kept in the schema (so the API server does not prune
//! them) and read as `requests`/`limits`. New objects are written typed.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ActionType;

/// A whole number, written as a number; a numeric string reads the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

impl Serialize for Int {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => Ok(Self(n)),
            Written::Text(text) => {
                text.trim().parse().map(Self).map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not a whole number"))
                })
            }
        }
    }
}

impl JsonSchema for Int {
    fn schema_name() -> Cow<'static, str> {
        "Int".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            // Bounds the cost of the rule below in the API server's CEL budget.
            "maxLength": 19,
            "x-kubernetes-validations": [{
                "rule": "type(self) == int || self.matches('^-?[0-9]{1,18}$')",
                "message": "must be a whole number"
            }]
        })
    }
}

/// A container's CPU and memory, as PatchResources sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceParams {
    /// CPU in millicores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<Int>,
    /// Memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<Int>,
}

/// The parameters of every action type; each type sets only its own (the
/// CRD's rules, from [`PARAMS`], refuse the rest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionParams {
    /// ScaleHpa: the new maxReplicas (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<Int>,
    /// ScaleHpa: a new minReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<Int>,
    /// DrainNode: the evicted pods' grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<Int>,
    /// DrainNode: how long the drain may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<Int>,
    /// ExpandPvc: the claim's new size in bytes (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size_bytes: Option<Int>,
    /// PatchResources: the container by name (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub container: Option<String>,
    /// PatchResources: new requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceParams>,
    /// PatchResources: new limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceParams>,
    /// DeleteJob: how long the Job must have been finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age_seconds: Option<Int>,
    /// ScaleWorkload: the new replica count (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Int>,
    /// DeleteFailedPods: the most pods one call deletes (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pods: Option<Int>,
    /// ReportOnly: what to tell a human (the analyzer's limit: it may quote
    /// the kubelet's or scheduler's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub explanation: Option<String>,
    /// Deprecated: `requests.cpuMillicores` as written before the
    /// parameters were typed; read as `requests`, never written.
    #[serde(
        rename = "requests.cpuMillicores",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_requests_cpu: Option<Int>,
    /// Deprecated: read as `requests.memoryBytes`, never written.
    #[serde(
        rename = "requests.memoryBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_requests_memory: Option<Int>,
    /// Deprecated: read as `limits.cpuMillicores`, never written.
    #[serde(
        rename = "limits.cpuMillicores",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_limits_cpu: Option<Int>,
    /// Deprecated: read as `limits.memoryBytes`, never written.
    #[serde(
        rename = "limits.memoryBytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub legacy_limits_memory: Option<Int>,
}

/// One parameter: its name in the CR, the action types it belongs to, and
/// whether those types require it.
#[derive(Debug)]
pub struct Param {
    /// The field name, e.g. `maxReplicas`.
    pub name: &'static str,
    /// The action types it belongs to.
    pub types: &'static [ActionType],
    /// Whether those types require it.
    pub required: bool,
}

const fn param(name: &'static str, types: &'static [ActionType], required: bool) -> Param {
    Param {
        name,
        types,
        required,
    }
}

/// Every parameter; the CRD's rules and the coordinator's check read it.
pub const PARAMS: &[Param] = &[
    param("maxReplicas", &[ActionType::ScaleHpa], true),
    param("minReplicas", &[ActionType::ScaleHpa], false),
    param("gracePeriodSeconds", &[ActionType::DrainNode], false),
    param("timeoutSeconds", &[ActionType::DrainNode], false),
    param("newSizeBytes", &[ActionType::ExpandPvc], true),
    param("container", &[ActionType::PatchResources], true),
    param("requests", &[ActionType::PatchResources], false),
    param("limits", &[ActionType::PatchResources], false),
    param(
        "requests.cpuMillicores",
        &[ActionType::PatchResources],
        false,
    ),
    param("requests.memoryBytes", &[ActionType::PatchResources], false),
    param("limits.cpuMillicores", &[ActionType::PatchResources], false),
    param("limits.memoryBytes", &[ActionType::PatchResources], false),
    param("minAgeSeconds", &[ActionType::DeleteJob], false),
    param("explanation", &[ActionType::ReportOnly], false),
    param("maxPods", &[ActionType::DeleteFailedPods], true),
    param("replicas", &[ActionType::ScaleWorkload], true),
];

impl ActionParams {
    /// The parameters that are set, as `(name, value)` in [`PARAMS`]'
    /// order, resources spelt as dotted names.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let int = |v: Option<Int>| v.map(|v| v.0.to_string());
        let requests = self.requests();
        let limits = self.limits();
        [
            ("maxReplicas", int(self.max_replicas)),
            ("minReplicas", int(self.min_replicas)),
            ("gracePeriodSeconds", int(self.grace_period_seconds)),
            ("timeoutSeconds", int(self.timeout_seconds)),
            ("newSizeBytes", int(self.new_size_bytes)),
            ("container", self.container.clone()),
            (
                "requests.cpuMillicores",
                int(requests.as_ref().and_then(|r| r.cpu_millicores)),
            ),
            (
                "requests.memoryBytes",
                int(requests.as_ref().and_then(|r| r.memory_bytes)),
            ),
            (
                "limits.cpuMillicores",
                int(limits.as_ref().and_then(|r| r.cpu_millicores)),
            ),
            (
                "limits.memoryBytes",
                int(limits.as_ref().and_then(|r| r.memory_bytes)),
            ),
            ("minAgeSeconds", int(self.min_age_seconds)),
            ("explanation", self.explanation.clone()),
            ("maxPods", int(self.max_pods)),
            ("replicas", int(self.replicas)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    /// The names of the parameters that are set as written (legacy
    /// spellings included), to check them against an action type.
    pub fn written(&self) -> Vec<&'static str> {
        let set = [
            ("maxReplicas", self.max_replicas.is_some()),
            ("minReplicas", self.min_replicas.is_some()),
            ("gracePeriodSeconds", self.grace_period_seconds.is_some()),
            ("timeoutSeconds", self.timeout_seconds.is_some()),
            ("newSizeBytes", self.new_size_bytes.is_some()),
            ("container", self.container.is_some()),
            ("requests", self.requests.is_some()),
            ("limits", self.limits.is_some()),
            ("requests.cpuMillicores", self.legacy_requests_cpu.is_some()),
            (
                "requests.memoryBytes",
                self.legacy_requests_memory.is_some(),
            ),
            ("limits.cpuMillicores", self.legacy_limits_cpu.is_some()),
            ("limits.memoryBytes", self.legacy_limits_memory.is_some()),
            ("minAgeSeconds", self.min_age_seconds.is_some()),
            ("explanation", self.explanation.is_some()),
            ("maxPods", self.max_pods.is_some()),
            ("replicas", self.replicas.is_some()),
        ];
        set.into_iter()
            .filter_map(|(name, present)| present.then_some(name))
            .collect()
    }

    /// The requests, whether written typed or in the legacy keys.
    pub fn requests(&self) -> Option<ResourceParams> {
        merged(
            self.requests.as_ref(),
            self.legacy_requests_cpu,
            self.legacy_requests_memory,
        )
    }

    /// The limits, whether written typed or in the legacy keys.
    pub fn limits(&self) -> Option<ResourceParams> {
        merged(
            self.limits.as_ref(),
            self.legacy_limits_cpu,
            self.legacy_limits_memory,
        )
    }
}

fn merged(
    typed: Option<&ResourceParams>,
    cpu: Option<Int>,
    memory: Option<Int>,
) -> Option<ResourceParams> {
    let resources = ResourceParams {
        cpu_millicores: typed.and_then(|t| t.cpu_millicores).or(cpu),
        memory_bytes: typed.and_then(|t| t.memory_bytes).or(memory),
    };
    (typed.is_some() || resources != ResourceParams::default()).then_some(resources)
}

/// The CRD rules on `spec.action`: each parameter only on its types, and
/// the required ones present.
pub(crate) fn add_rules(schema: &mut Schema) {
    let quoted = |types: &[ActionType]| {
        types
            .iter()
            .map(|t| format!("'{}'", t.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rules = Vec::new();
    for p in PARAMS {
        // CEL escapes a dot in a field name as __dot__.
        let field = p.name.replace('.', "__dot__");
        let types = quoted(p.types);
        rules.push(serde_json::json!({
            "rule": format!("!has(self.params) || !has(self.params.{field}) || self.type in [{types}]"),
            "message": format!("params.{} belongs to {} only", p.name, types.replace('\'', "")),
        }));
        if p.required {
            rules.push(serde_json::json!({
                "rule": format!("!(self.type in [{types}]) || (has(self.params) && has(self.params.{field}))"),
                "message": format!("params.{} is required for {}", p.name, types.replace('\'', "")),
            }));
        }
    }
    schema.insert("x-kubernetes-validations".to_owned(), rules.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_from_numbers_and_numeric_strings_and_are_written_as_numbers() {
        let typed: ActionParams =
            serde_json::from_str(r#"{"maxReplicas": 6, "minReplicas": "2"}"#).unwrap();
        assert_eq!(typed.max_replicas, Some(Int(6)));
        assert_eq!(typed.min_replicas, Some(Int(2)));
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            serde_json::json!({ "maxReplicas": 6, "minReplicas": 2 })
        );
        let error = serde_json::from_str::<ActionParams>(r#"{"maxReplicas": "six"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"six\" is not a whole number"), "{error}");
    }

    #[test]
    fn legacy_resource_keys_read_as_requests_and_limits() {
        let legacy: ActionParams = serde_json::from_str(
            r#"{"container": "app", "limits.memoryBytes": "805306368", "requests.cpuMillicores": "250"}"#,
        )
        .unwrap();
        assert_eq!(
            legacy.limits(),
            Some(ResourceParams {
                cpu_millicores: None,
                memory_bytes: Some(Int(805_306_368)),
            })
        );
        assert_eq!(legacy.requests().unwrap().cpu_millicores, Some(Int(250)));
        assert_eq!(
            legacy.entries(),
            [
                ("container", "app".to_owned()),
                ("requests.cpuMillicores", "250".to_owned()),
                ("limits.memoryBytes", "805306368".to_owned()),
            ]
        );
        assert_eq!(
            legacy.written(),
            ["container", "requests.cpuMillicores", "limits.memoryBytes"]
        );
    }
}
