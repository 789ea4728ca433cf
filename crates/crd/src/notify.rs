//! Where a policy's notifications go.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The Secret, in the policy's namespace, that holds sink URLs. The
/// coordinator may read Secrets of this name only (its RBAC names it).
pub const NOTIFICATIONS_SECRET: &str = "nanny-notifications";

/// A policy's notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notifications {
    /// Where to send them.
    #[schemars(length(min = 1, max = 8))]
    pub sinks: Vec<Sink>,
    /// Which moments are sent; each once per action.
    #[serde(default = "default_on")]
    #[schemars(length(min = 1, max = 2))]
    pub on: Vec<NotifyOn>,
}

fn default_on() -> Vec<NotifyOn> {
    vec![NotifyOn::PendingApproval, NotifyOn::Escalated]
}

/// One receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sink {
    /// The payload format.
    #[serde(rename = "type")]
    pub type_: SinkType,
    /// The key, in the Secret `nanny-notifications` of the policy's
    /// namespace, whose value is the receiver's URL.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub url_key: String,
}

/// Payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SinkType {
    /// Nanny's own JSON document.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack,
    /// Alertmanager's webhook-receiver format (one firing alert).
    Alertmanager,
}

/// The moments a policy can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NotifyOn {
    /// An action waits for a human's approval.
    PendingApproval,
    /// The ladder handed an incident to a human.
    Escalated,
}
