//! The resources no action may touch, whatever a policy says: the seeds'
//! protected namespaces, kinds and labels. The safety gate decides with
//! them; the remediator checks them again on the live object and its owners
//! before it writes (defence in depth). A config may add entries, never drop
//! a default.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Section `protected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResources {
    /// Namespaces no action may touch.
    pub namespaces: Vec<String>,
    /// Kinds no action may touch.
    pub kinds: Vec<String>,
    /// `key=value` labels that mark an object as protected.
    pub labels: Vec<String>,
}

impl Default for ProtectedResources {
    fn default() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self {
            namespaces: strings(&[
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "cert-manager",
                "ingress-nginx",
                "monitoring",
            ]),
            kinds: strings(&["CustomResourceDefinition", "PersistentVolume"]),
            labels: strings(&[
                "app.kubernetes.io/managed-by=Helm",
                "nanny.ai/protected=true",
            ]),
        }
    }
}

impl ProtectedResources {
    /// Checks that every default is kept and every label is `key=value`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `protected.namespaces`, `.kinds` or `.labels`.
    pub fn validate(&self) -> Result<(), Error> {
        let defaults = Self::default();
        // A config may add protections; dropping a default would weaken Nanny.
        for (key, configured, required) in [
            (
                "protected.namespaces",
                &self.namespaces,
                &defaults.namespaces,
            ),
            ("protected.kinds", &self.kinds, &defaults.kinds),
            ("protected.labels", &self.labels, &defaults.labels),
        ] {
            if let Some(missing) = required.iter().find(|r| !configured.contains(r)) {
                return Err(Error::config(
                    key,
                    format!("must keep the default {missing:?}"),
                ));
            }
        }
        for label in &self.labels {
            match label.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {}
                _ => {
                    return Err(Error::config(
                        "protected.labels",
                        format!("{label:?} is not key=value"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Why the first protected object among `objects` (Kubernetes objects
    /// as JSON: a target, then its owners) may not be touched, if any is.
    pub fn refusal(&self, objects: &[&Value]) -> Option<String> {
        objects.iter().find_map(|object| self.refusal_of(object))
    }

    fn refusal_of(&self, object: &Value) -> Option<String> {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (kind, namespace, name) = (
            text("/kind"),
            text("/metadata/namespace"),
            text("/metadata/name"),
        );
        let what = if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        };
        if self.namespaces.iter().any(|n| n == namespace) {
            return Some(format!("{what} is in protected namespace {namespace}"));
        }
        if self.kinds.iter().any(|k| k == kind) {
            return Some(format!("{what} is of protected kind {kind}"));
        }
        let labels = object.pointer("/metadata/labels");
        self.labels.iter().find_map(|label| {
            let (key, value) = label.split_once('=')?;
            (labels.and_then(|l| l.get(key)).and_then(Value::as_str) == Some(value))
                .then(|| format!("{what} carries protected label {label}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn any_protected_object_in_the_chain_refuses() {
        let protected = ProtectedResources::default();
        let pod = json!({ "kind": "Pod", "metadata": { "namespace": "shop", "name": "web-1" } });
        let deployment = json!({ "kind": "Deployment", "metadata": { "namespace": "shop", "name": "web",
            "labels": { "app.kubernetes.io/managed-by": "Helm" } } });
        assert_eq!(protected.refusal(&[&pod]), None);
        assert_eq!(
            protected.refusal(&[&pod, &deployment]).as_deref(),
            Some("Deployment shop/web carries protected label app.kubernetes.io/managed-by=Helm")
        );
        let system =
            json!({ "kind": "Pod", "metadata": { "namespace": "kube-system", "name": "dns" } });
        assert!(
            protected
                .refusal(&[&system])
                .unwrap()
                .contains("protected namespace")
        );
        let pv = json!({ "kind": "PersistentVolume", "metadata": { "name": "pv-1" } });
        assert!(
            protected
                .refusal(&[&pv])
                .unwrap()
                .contains("protected kind")
        );
    }

    #[test]
    fn defaults_cannot_be_dropped() {
        let mut protected = ProtectedResources::default();
        protected.namespaces.push("payments".into());
        assert!(protected.validate().is_ok());
        protected.namespaces.retain(|n| n != "kube-system");
        assert!(
            protected
                .validate()
                .unwrap_err()
                .to_string()
                .contains("kube-system")
        );
        let mut protected = ProtectedResources::default();
        protected.labels.push("team".into());
        assert!(
            protected
                .validate()
                .unwrap_err()
                .to_string()
                .contains("protected.labels")
        );
    }
}
