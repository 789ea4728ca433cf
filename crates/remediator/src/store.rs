//! Action records: one ConfigMap per executed action in the state namespace.
//!
//! The record is the idempotency key's memory and what a rollback restores
//! at once: the before and after values of exactly the fields the action
//! changed (never the object), under an HMAC only this remediator can make. It lives in the cluster, not in memory, so a restarted or second
//! remediator replica still acts once per action id and can still roll back;
//! it cannot live on the target, because RestartPod and DeleteJob delete the
//! target. Creating the record is the claim: the API server lets exactly one
//! of two concurrent Executes with the same id create it.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::ConfigMap};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions},
};
use nanny_proto::v1::ActionResult;
use prost::Message;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::error::{Error, api_code};

/// Prefix of every record's ConfigMap name.
pub const PREFIX: &str = "nanny-action-";
const RECORD_KEY: &str = "record.json";
const RESULT_KEY: &str = "result.pb";
const ROLLBACK_KEY: &str = "rollback.pb";
const MAC_KEY: &str = "mac";
/// Separates the records' MAC from any other use of the key.
const MAC_DOMAIN: &[u8] = b"nanny.remediator.ActionRecord/1";

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Claimed; the write may or may not have happened (an interrupted run).
    Executing,
    /// Acted; the result is stored.
    Done,
    /// Rolled back; the rollback's result is stored too.
    RolledBack,
}

/// One field an action changed: its JSON pointer into the object and its
/// values before and after (null: absent). Only fields the action type may
/// change are ever recorded ([`crate::undo`]): never the object itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// JSON pointer, e.g. `/spec/maxReplicas`.
    pub pointer: String,
    /// The value before the action.
    pub before: serde_json::Value,
    /// The value the action wrote, as the API server stored it.
    pub after: serde_json::Value,
}

/// What an action touched, without its content: what a delete's "diff" and
/// a restart's verification need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `Kind namespace/name` and uid of the controlling owner, if any.
    pub owner: Option<TargetRecord>,
    /// A pod's phase, a Job's finish; empty otherwise.
    pub state: String,
}

/// What is stored for one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Hash of recommendation id, action and target uid: a replayed request
    /// must match it.
    pub fingerprint: String,
    /// The recommendation executed.
    pub recommendation_id: String,
    /// e.g. `ACTION_TYPE_SCALE_HPA`.
    pub action_type: String,
    /// Target kind, namespace, name, uid.
    pub target: TargetRecord,
    /// The target's owner and state just before the action.
    pub summary: Summary,
    /// PatchResources: the container patched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The fields the action changed; a rollback restores exactly these.
    pub changes: Vec<FieldChange>,
    /// Why it cannot be undone, when it cannot.
    pub not_reversible: Option<String>,
    /// Where the record is in its life.
    pub phase: Phase,
    /// The remediator process that claimed it (random per process start).
    #[serde(default)]
    pub instance: String,
    /// Unix seconds of the claim.
    #[serde(default)]
    pub claimed_at: i64,
}

/// The acted-on object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Kind.
    pub kind: String,
    /// Namespace, empty for cluster-scoped.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
}

/// A stored record with its results.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The record.
    pub record: Record,
    /// The Execute result, once done.
    pub result: Option<ActionResult>,
    /// The Rollback result, once rolled back.
    pub rollback: Option<ActionResult>,
    resource_version: Option<String>,
}

/// The records of one state namespace.
#[derive(Clone)]
pub struct Store {
    api: Api<ConfigMap>,
    namespace: String,
    /// HMAC-SHA256 over each record: only this remediator's key makes one.
    mac: hmac::Key,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the MAC key.
        f.debug_struct("Store")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Records in `namespace`, authenticated with `mac_key`.
    pub fn new(client: Client, namespace: &str, mac_key: &[u8]) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key),
        }
    }

    /// The MAC's input: the action id (the ConfigMap's name, so a record
    /// cannot be copied to another action) and every stored part,
    /// length-prefixed.
    fn mac_input(action_id: &str, parts: [&[u8]; 3]) -> Vec<u8> {
        let mut input = Vec::new();
        for part in [MAC_DOMAIN, action_id.as_bytes()].into_iter().chain(parts) {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part);
        }
        input
    }

    /// `configmap/<namespace>/<name>`: the record's reference in results
    /// (`pre_image_ref`).
    pub fn reference(&self, action_id: &str) -> String {
        format!("configmap/{}/{PREFIX}{action_id}", self.namespace)
    }

    /// The record of `action_id`, if any.
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be read or decoded.
    pub async fn get(&self, action_id: &str) -> Result<Option<Stored>, Error> {
        let store_error = |message: String| Error::Store {
            action_id: action_id.to_owned(),
            message,
        };
        let map = match self.api.get_opt(&format!("{PREFIX}{action_id}")).await {
            Ok(Some(map)) => map,
            Ok(None) => return Ok(None),
            Err(error) => return Err(store_error(kube_message(&error))),
        };
        let data = map.data.clone().unwrap_or_default();
        let binary = map.binary_data.clone().unwrap_or_default();
        let text = data
            .get(RECORD_KEY)
            .ok_or_else(|| store_error(format!("{RECORD_KEY} is missing")))?;
        let bytes = |key: &str| binary.get(key).map(|b| b.0.as_slice()).unwrap_or_default();
        // The MAC first: nothing of a record is read before it is known to
        // be this remediator's own.
        let mac = binary
            .get(MAC_KEY)
            .map(|b| b.0.as_slice())
            .unwrap_or_default();
        let input = Self::mac_input(
            action_id,
            [text.as_bytes(), bytes(RESULT_KEY), bytes(ROLLBACK_KEY)],
        );
        if hmac::verify(&self.mac, &input, mac).is_err() {
            tracing::error!(action_id, record = %self.reference(action_id), "An action record fails its integrity check: it was not written by this remediator, or was changed since; refusing it.");
            return Err(Error::Tampered {
                action_id: action_id.to_owned(),
                reference: self.reference(action_id),
            });
        }
        let record: Record =
            serde_json::from_str(text).map_err(|e| store_error(format!("{RECORD_KEY}: {e}")))?;
        let decode = |key: &str| -> Result<Option<ActionResult>, Error> {
            binary
                .get(key)
                .map(|bytes| {
                    ActionResult::decode(bytes.0.as_slice())
                        .map_err(|e| store_error(format!("{key}: {e}")))
                })
                .transpose()
        };
        Ok(Some(Stored {
            result: decode(RESULT_KEY)?,
            rollback: decode(ROLLBACK_KEY)?,
            record,
            resource_version: map.metadata.resource_version.clone(),
        }))
    }

    /// Creates the record: the claim on `action_id`.
    ///
    /// # Errors
    /// [`Error::InProgress`] when another request claimed it first,
    /// [`Error::Store`] when it cannot be written.
    pub async fn claim(&self, action_id: &str, record: &Record) -> Result<Stored, Error> {
        let map = self.config_map(action_id, record, None, None, None)?;
        match self.api.create(&PostParams::default(), &map).await {
            Ok(created) => Ok(Stored {
                record: record.clone(),
                result: None,
                rollback: None,
                resource_version: created.metadata.resource_version,
            }),
            Err(error) if api_code(&error) == Some(409) => Err(Error::InProgress {
                action_id: action_id.to_owned(),
            }),
            Err(error) => Err(Error::Store {
                action_id: action_id.to_owned(),
                message: kube_message(&error),
            }),
        }
    }

    /// Replaces the record (optimistically: a concurrent writer makes this fail).
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be written.
    pub async fn update(&self, action_id: &str, stored: &mut Stored) -> Result<(), Error> {
        let map = self.config_map(
            action_id,
            &stored.record,
            stored.result.as_ref(),
            stored.rollback.as_ref(),
            stored.resource_version.clone(),
        )?;
        let updated = self
            .api
            .replace(
                &format!("{PREFIX}{action_id}"),
                &PostParams::default(),
                &map,
            )
            .await
            .map_err(|error| Error::Store {
                action_id: action_id.to_owned(),
                message: kube_message(&error),
            })?;
        stored.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Deletes the finished records (acted, or rolled back) created before
    /// `cutoff` (Unix seconds), each only if unchanged since it was read.
    /// Claims still executing, and records that cannot be decoded, are left
    /// alone. Returns how many were deleted.
    ///
    /// # Errors
    /// [`Error::Store`] when the records cannot be listed.
    pub async fn sweep(&self, cutoff: i64) -> Result<usize, Error> {
        let mut deleted = 0;
        let mut params = ListParams::default().limit(500);
        loop {
            let page = self.api.list(&params).await.map_err(|error| Error::Store {
                action_id: format!("{PREFIX}*"),
                message: kube_message(&error),
            })?;
            for map in &page.items {
                let name = map.metadata.name.clone().unwrap_or_default();
                let Some(text) = name
                    .strip_prefix(PREFIX)
                    .and_then(|_| map.data.as_ref()?.get(RECORD_KEY))
                else {
                    continue;
                };
                // Kept for inspection, and said so at every sweep: never
                // dropped silently.
                let record = match serde_json::from_str::<Record>(text) {
                    Ok(record) => record,
                    Err(error) => {
                        tracing::warn!(record = %name, %error, "An action record cannot be decoded; kept for inspection, not swept.");
                        continue;
                    }
                };
                // The API server's creation time: the claim's, whatever the
                // record's version.
                let created = map
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(i64::MAX, |t| t.0.as_second());
                if record.phase == Phase::Executing || created >= cutoff {
                    continue;
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: map.metadata.uid.clone(),
                        resource_version: map.metadata.resource_version.clone(),
                    }),
                    ..DeleteParams::default()
                };
                match self.api.delete(&name, &params).await {
                    Ok(_) => deleted += 1,
                    // Gone, or changed since it was read: the next sweep.
                    Err(error) if matches!(api_code(&error), Some(404 | 409)) => {}
                    Err(error) => {
                        tracing::warn!(record = %name, error = %kube_message(&error), "Cannot delete an old action record; retrying at the next sweep.");
                    }
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(deleted),
            }
        }
    }

    /// Deletes a claim whose action wrote nothing, so a retry may act.
    ///
    /// # Errors
    /// [`Error::Store`] when it cannot be deleted.
    pub async fn release(&self, action_id: &str) -> Result<(), Error> {
        match self
            .api
            .delete(&format!("{PREFIX}{action_id}"), &Default::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if api_code(&error) == Some(404) => Ok(()),
            Err(error) => Err(Error::Store {
                action_id: action_id.to_owned(),
                message: kube_message(&error),
            }),
        }
    }

    fn config_map(
        &self,
        action_id: &str,
        record: &Record,
        result: Option<&ActionResult>,
        rollback: Option<&ActionResult>,
        resource_version: Option<String>,
    ) -> Result<ConfigMap, Error> {
        let text = serde_json::to_string(record).map_err(|e| Error::Store {
            action_id: action_id.to_owned(),
            message: e.to_string(),
        })?;
        let result = result.map(Message::encode_to_vec);
        let rollback = rollback.map(Message::encode_to_vec);
        let input = Self::mac_input(
            action_id,
            [
                text.as_bytes(),
                result.as_deref().unwrap_or_default(),
                rollback.as_deref().unwrap_or_default(),
            ],
        );
        let mut binary = BTreeMap::from([(
            MAC_KEY.to_owned(),
            ByteString(hmac::sign(&self.mac, &input).as_ref().to_vec()),
        )]);
        if let Some(result) = result {
            binary.insert(RESULT_KEY.to_owned(), ByteString(result));
        }
        if let Some(rollback) = rollback {
            binary.insert(ROLLBACK_KEY.to_owned(), ByteString(rollback));
        }
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("{PREFIX}{action_id}")),
                namespace: Some(self.namespace.clone()),
                resource_version,
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "nanny-remediator".to_owned(),
                    ),
                    ("nanny.ai/action-record".to_owned(), "true".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(RECORD_KEY.to_owned(), text)])),
            binary_data: Some(binary),
            ..ConfigMap::default()
        })
    }
}

/// A client error as text without request internals.
pub fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        _ => "the API server is unreachable".to_owned(),
    }
}
