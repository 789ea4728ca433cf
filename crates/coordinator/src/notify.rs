//! Notifications: an action that waits for a human, or an incident the
//! ladder escalated, is told to the policy's sinks — once per action and
//! moment, across restarts (an annotation on the action records it), with
//! retries and back-off in a task of its own, so a failing sink never holds
//! an action up. Under a policy with AI enabled a message waits up to
//! [`EXPLANATION_WAIT`] for the model's explanation of the action and
//! carries it, marked as untrusted model output; it is sent without one
//! after that.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams},
};
use nanny_crd::{
    ExplanationRecord, HealingAction, HealingPolicy, NOTIFICATIONS_SECRET, NotifyOn, Sink, SinkType,
};
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::{Value, json};

/// How long a delivered message is remembered in memory besides the
/// action's annotation (a reconcile that read the action before the
/// annotation was written is long over by then).
const REMEMBER_SENT: Duration = Duration::from_secs(3600);
/// Annotation prefix: `nanny.ai/notified-<moment>` holds when it was sent.
pub const NOTIFIED_PREFIX: &str = "nanny.ai/notified-";
/// Tries per message before it waits for a later sweep.
const TRIES: u32 = 4;
/// A message whose tries all failed is tried again after this long.
const GIVE_UP_FOR: Duration = Duration::from_secs(60);
/// Longest wait for the model's explanation before a message goes without
/// it (the model is asked in parallel with the rules; its answer usually
/// lands within seconds of the action).
pub const EXPLANATION_WAIT: Duration = Duration::from_secs(20);
/// How often the action is read again while waiting for its explanation.
const EXPLANATION_POLL: Duration = Duration::from_secs(2);

/// (namespace, name, moment) of a message being sent (`None`), or whose
/// tries failed (`Some`: not before then).
type Busy = HashMap<(String, String, &'static str), Option<tokio::time::Instant>>;

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    client: Client,
    http: reqwest::Client,
    busy: Arc<Mutex<Busy>>,
    sent: IntCounterVec,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

fn moment_name(on: NotifyOn) -> &'static str {
    match on {
        NotifyOn::PendingApproval => "PendingApproval",
        NotifyOn::Escalated => "Escalated",
    }
}

impl Notifier {
    /// A notifier using `client` to read sink URLs and record what was sent.
    ///
    /// # Errors
    /// When the metric cannot be registered.
    pub fn new(client: Client, registry: &Registry) -> Result<Self, nanny_common::Error> {
        let sent = IntCounterVec::new(
            Opts::new(
                "nanny_notifications_total",
                "Notification messages, by sink type and result.",
            ),
            &["sink", "result"],
        )?;
        registry.register(Box::new(sent.clone()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| nanny_common::Error::config("notifications", e.to_string()))?;
        Ok(Self {
            client,
            http,
            busy: Arc::default(),
            sent,
        })
    }

    /// Tells `policy`'s sinks that `action` reached `on`, unless it was told
    /// before (or is being told now). Returns at once.
    pub fn once(&self, policy: &HealingPolicy, action: &HealingAction, on: NotifyOn) {
        let Some(notifications) = policy.spec.notifications.as_ref() else {
            return;
        };
        if !notifications.on.contains(&on) {
            return;
        }
        let moment = moment_name(on);
        if action
            .annotations()
            .contains_key(&format!("{NOTIFIED_PREFIX}{moment}"))
        {
            return;
        }
        let key = (
            action.namespace().unwrap_or_default(),
            action.name_any(),
            moment,
        );
        {
            let Ok(mut busy) = self.busy.lock() else {
                return;
            };
            match busy.get(&key) {
                Some(None) => return,
                Some(Some(until)) if tokio::time::Instant::now() < *until => return,
                _ => {}
            }
            // Forget what is past its quiet time (the map stays small).
            let now = tokio::time::Instant::now();
            busy.retain(|_, until| until.is_none_or(|until| now < until));
            busy.insert(key.clone(), None);
        }
        let (notifier, sinks, action) = (self.clone(), notifications.sinks.clone(), action.clone());
        let explained = policy.spec.ai.enabled;
        tokio::spawn(async move {
            let action = if explained {
                notifier.with_explanation(action).await
            } else {
                action
            };
            let delivered = notifier.deliver(&sinks, &action, moment).await;
            let Ok(mut busy) = notifier.busy.lock() else {
                return;
            };
            // Delivered: remembered for a while, so that a step that read
            // the action before the annotation landed does not send it again.
            let quiet = if delivered {
                REMEMBER_SENT
            } else {
                GIVE_UP_FOR
            };
            busy.insert(key, Some(tokio::time::Instant::now() + quiet));
        });
    }

    /// `action` as the API shows it once it carries the model's
    /// explanation, or after [`EXPLANATION_WAIT`] without one.
    async fn with_explanation(&self, mut action: HealingAction) -> HealingAction {
        let api = Api::<HealingAction>::namespaced(
            self.client.clone(),
            &action.namespace().unwrap_or_default(),
        );
        let deadline = tokio::time::Instant::now() + EXPLANATION_WAIT;
        while explanation(&action).is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(EXPLANATION_POLL).await;
            match api.get_opt(&action.name_any()).await {
                Ok(Some(latest)) => action = latest,
                // Gone: whatever is sent, it is sent about what was seen.
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, action = %action.name_any(), "Cannot read the action while waiting for its explanation.");
                }
            }
        }
        action
    }

    /// Sends to every sink that has not had it; records it on the action
    /// when all have. Whether it was.
    async fn deliver(&self, sinks: &[Sink], action: &HealingAction, moment: &str) -> bool {
        let namespace = action.namespace().unwrap_or_default();
        let secret = match Api::<Secret>::namespaced(self.client.clone(), &namespace)
            .get_opt(NOTIFICATIONS_SECRET)
            .await
        {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(%namespace, "The policy names notification sinks but the Secret {NOTIFICATIONS_SECRET} is missing; nothing sent.");
                return false;
            }
            Err(error) => {
                tracing::warn!(%error, %namespace, "Cannot read the notification Secret; nothing sent.");
                return false;
            }
        };
        let message = Message::of(action, moment);
        let mut all = true;
        for sink in sinks {
            let url = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&sink.url_key))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .map(|u| u.trim().to_owned())
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
            let Some(url) = url else {
                tracing::warn!(key = %sink.url_key, "No http(s) URL under this key of {NOTIFICATIONS_SECRET}; that sink is skipped.");
                self.count(sink.type_, "misconfigured");
                all = false;
                continue;
            };
            let ok = self.post(&url, &message.payload(sink.type_)).await;
            self.count(sink.type_, if ok { "sent" } else { "failed" });
            all &= ok;
        }
        if all {
            let patch = json!({ "metadata": { "annotations": {
                format!("{NOTIFIED_PREFIX}{moment}"): Timestamp::now().to_string(),
            } } });
            if let Err(error) = Api::<HealingAction>::namespaced(self.client.clone(), &namespace)
                .patch(
                    &action.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
            {
                tracing::warn!(%error, action = %action.name_any(), "Sent, but cannot record it; it may be sent again.");
            }
        }
        all
    }

    /// POSTs `body` with retries and back-off (1, 2, 4 s).
    async fn post(&self, url: &str, body: &Value) -> bool {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            match self.http.post(url).json(body).send().await {
                Ok(reply) if reply.status().is_success() => return true,
                Ok(reply) => {
                    tracing::warn!(status = %reply.status(), attempt, "A notification sink refused the message.");
                }
                Err(error) => {
                    tracing::warn!(error = %error.without_url(), attempt, "A notification sink is unreachable.");
                }
            }
            if attempt < TRIES {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        false
    }

    fn count(&self, sink: SinkType, result: &str) {
        let sink = match sink {
            SinkType::Webhook => "webhook",
            SinkType::Slack => "slack",
            SinkType::Alertmanager => "alertmanager",
        };
        self.sent.with_label_values(&[sink, result]).inc();
    }
}

/// Slack's escaping of `&`, `<` and `>` in message text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn explanation(action: &HealingAction) -> Option<&ExplanationRecord> {
    action.status.as_ref()?.explanation.as_ref()
}

/// What a message says, whatever its format.
struct Message {
    id: String,
    moment: String,
    namespace: String,
    name: String,
    action: String,
    target: String,
    reason: String,
    evidence: Vec<String>,
    command: String,
    /// The model's explanation: text for people, never an instruction.
    explanation: Option<ExplanationRecord>,
}

impl Message {
    fn of(action: &HealingAction, moment: &str) -> Self {
        let spec = &action.spec;
        let namespace = action.namespace().unwrap_or_default();
        let name = action.name_any();
        let target = if spec.target.namespace.is_empty() {
            format!("{} {}", spec.target.kind, spec.target.name)
        } else {
            format!(
                "{} {}/{}",
                spec.target.kind, spec.target.namespace, spec.target.name
            )
        };
        let command = if moment == "PendingApproval" {
            format!("nannyctl approve -n {namespace} {name}")
        } else {
            format!(
                "kubectl annotate healingaction -n {namespace} {name} nanny.ai/resolve=<what was done>"
            )
        };
        // A receiver dedupes on the id: the same action and moment.
        let id = format!("{}/{moment}", action.uid().unwrap_or_else(|| name.clone()));
        Self {
            id,
            moment: moment.to_owned(),
            namespace,
            name,
            action: spec.action.type_.name().to_owned(),
            target,
            reason: spec.reasoning.chars().take(2000).collect(),
            evidence: spec.evidence.iter().take(8).cloned().collect(),
            command,
            explanation: explanation(action).cloned(),
        }
    }

    /// The explanation as one line, labelled as model output.
    fn explained(&self) -> Option<String> {
        let e = self.explanation.as_ref()?;
        let risk = if e.risk.is_empty() {
            String::new()
        } else {
            format!(" Risk: {}", e.risk)
        };
        Some(format!(
            "Model explanation (untrusted model output, {}; {}): {}{risk}",
            e.model, e.agreement, e.hypothesis
        ))
    }

    fn headline(&self) -> String {
        if self.moment == "PendingApproval" {
            format!("{} on {} waits for approval", self.action, self.target)
        } else {
            format!(
                "Escalated: automatic remedies for {} did not help",
                self.target
            )
        }
    }

    fn payload(&self, sink: SinkType) -> Value {
        match sink {
            SinkType::Webhook => json!({
                "id": self.id,
                "event": self.moment,
                "healingAction": { "namespace": self.namespace, "name": self.name },
                "action": self.action,
                "target": self.target,
                "reason": self.reason,
                "evidence": self.evidence,
                "command": self.command,
                "modelExplanation": self.explanation.as_ref().map(|e| json!({
                    "untrustedModelOutput": true,
                    "hypothesis": e.hypothesis,
                    "risk": e.risk,
                    "citedEvidence": e.cited_evidence,
                    "agreement": e.agreement,
                    "model": e.model,
                    "promptVersion": e.prompt_version,
                    "incident": e.incident,
                })),
            }),
            SinkType::Slack => {
                // Slack reads `<!channel>` and `<url|text>` as mentions and
                // links: every part is escaped so it can only be text (a
                // model's reason or explanation included).
                let explained = self
                    .explained()
                    .map(|e| format!("\n_{}_", slack_escape(&e)))
                    .unwrap_or_default();
                json!({
                    "text": format!(
                        "*Nanny*: {}\n{}{explained}\n`{}`",
                        slack_escape(&self.headline()),
                        slack_escape(&self.reason),
                        slack_escape(&self.command)
                    ),
                })
            }
            SinkType::Alertmanager => {
                let labels = json!({
                    "alertname": format!("Nanny{}", self.moment),
                    "namespace": self.namespace,
                    "healingaction": self.name,
                    "action": self.action,
                });
                let mut annotations = json!({
                    "summary": self.headline(),
                    "description": self.reason,
                    "command": self.command,
                });
                if let Some(explained) = self.explained() {
                    annotations["model_explanation"] = json!(explained);
                }
                json!({
                    "version": "4",
                    "groupKey": self.id,
                    "truncatedAlerts": 0,
                    "status": "firing",
                    "receiver": "nanny",
                    "groupLabels": { "alertname": labels["alertname"] },
                    "commonLabels": labels,
                    "commonAnnotations": annotations,
                    "externalURL": "",
                    "alerts": [{
                        "status": "firing",
                        "labels": labels,
                        "annotations": annotations,
                        "startsAt": Timestamp::now().to_string(),
                        "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "",
                        "fingerprint": self.id,
                    }],
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_carries_the_action_target_reason_and_command() {
        let action = action();
        let message = Message::of(&action, "PendingApproval");
        let webhook = message.payload(SinkType::Webhook);
        assert_eq!(webhook["id"], "u1/PendingApproval");
        assert_eq!(webhook["command"], "nannyctl approve -n shop web-patch");
        assert_eq!(webhook["target"], "Deployment shop/web");
        let slack = message.payload(SinkType::Slack)["text"].to_string();
        assert!(
            slack.contains("PatchResources on Deployment shop/web waits for approval")
                && slack.contains("nannyctl approve -n shop web-patch"),
            "{slack}"
        );
        let alert = message.payload(SinkType::Alertmanager);
        assert_eq!(
            alert["alerts"][0]["labels"]["alertname"],
            "NannyPendingApproval"
        );
        assert_eq!(
            alert["alerts"][0]["annotations"]["description"],
            "OOM-killed 4 times"
        );
        let escalated = Message::of(&action, "Escalated").payload(SinkType::Webhook);
        assert!(
            escalated["command"]
                .as_str()
                .is_some_and(|c| c.contains("nanny.ai/resolve")),
            "{escalated}"
        );
    }

    fn action() -> HealingAction {
        serde_json::from_value(json!({
            "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
            "metadata": { "name": "web-patch", "namespace": "shop", "uid": "u1" },
            "spec": {
                "policyRef": "shop/default",
                "target": { "kind": "Deployment", "namespace": "shop", "name": "web", "uid": "d1" },
                "action": { "type": "PatchResources" },
                "source": { "kind": "Rule", "name": "oom" },
                "confidence": 100, "reasoning": "OOM-killed 4 times", "recommendationId": "r",
                "snapshotId": "s",
            },
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_models_explanation_is_carried_as_model_output_and_cannot_mention_or_link() {
        let action = action();
        let message = Message::of(&action, "PendingApproval");
        let webhook = message.payload(SinkType::Webhook);
        let slack = message.payload(SinkType::Slack)["text"].to_string();
        assert!(webhook["modelExplanation"].is_null());
        assert!(!slack.contains("Model explanation"), "{slack}");

        // With the model's explanation: in every format, marked as model output.
        let mut explained = action.clone();
        explained.status = Some(nanny_crd::HealingActionStatus {
            explanation: Some(ExplanationRecord {
                incident: "inc-0123456789abcdef".into(),
                hypothesis: "The container needs more than 128Mi at start.".into(),
                risk: "A rollout replaces the pods.".into(),
                cited_evidence: vec!["e1: last termination = OOMKilled".into()],
                model: "openai/smollm2:135m".into(),
                prompt_version: "nanny-v2".into(),
                agreement: "Agrees".into(),
                at: None,
            }),
            ..nanny_crd::HealingActionStatus::default()
        });
        let message = Message::of(&explained, "PendingApproval");
        let webhook = message.payload(SinkType::Webhook);
        assert_eq!(webhook["modelExplanation"]["untrustedModelOutput"], true);
        assert_eq!(
            webhook["modelExplanation"]["hypothesis"],
            "The container needs more than 128Mi at start."
        );
        let slack = message.payload(SinkType::Slack)["text"].to_string();
        assert!(
            slack.contains("Model explanation (untrusted model output, openai/smollm2:135m; Agrees): The container needs more than 128Mi at start. Risk: A rollout replaces the pods."),
            "{slack}"
        );
        // A hostile hypothesis cannot mention or link in Slack.
        let mut hostile = explained.clone();
        if let Some(e) = hostile.status.as_mut().and_then(|s| s.explanation.as_mut()) {
            e.hypothesis = "<!channel> see <https://evil.example|the fix> & approve".into();
        }
        let slack =
            Message::of(&hostile, "PendingApproval").payload(SinkType::Slack)["text"].to_string();
        assert!(
            slack.contains(
                "&lt;!channel&gt; see &lt;https://evil.example|the fix&gt; &amp; approve"
            ) && !slack.contains("<!channel>"),
            "{slack}"
        );
        let alert = message.payload(SinkType::Alertmanager);
        assert!(
            alert["alerts"][0]["annotations"]["model_explanation"]
                .as_str()
                .is_some_and(|e| e.starts_with("Model explanation (untrusted model output")),
            "{alert}"
        );
    }
}
