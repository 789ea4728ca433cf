//! Consulting the model: the snapshot's issues correlated into incidents,
//! one question per incident through the model's [`Scheduler`], and each
//! answer checked before anything of it leaves:
//!
//! - a proposal must address an issue of its incident and target one of its
//!   objects (`issue_not_in_prompt`, `target_not_in_incident`), then pass
//!   the same validation as a rule's recommendation;
//! - an explanation must have a hypothesis and cite only evidence its
//!   incident carried, or it is dropped (`missing`, `bad_citation`);
//! - the explanation is attached to the rules' recommendations for the
//!   same incident (saying whether the model agrees) and to the model's own.
//!
//! Nothing the model writes decides anything: the explanation is text for
//! people, the confidence can only lower a level, and the gate decides.

use std::{collections::BTreeMap, time::SystemTime};

use nanny_proto::v1::{
    Agreement, ClusterSnapshot, Explanation, IncidentRef, ModelExchange, ModelSource,
    Recommendation, TriedAction,
};
use sha2::{Digest as _, Sha256};

use crate::{
    analysis::{Analysis, ModelAnswer, rule_id, steps_of, target_uid},
    incident::{self, Incident},
    index::SnapshotIndex,
    llm::{self, Answer, Job, MAX_HYPOTHESIS_CHARS, MAX_RISK_CHARS, ModelInfo, ModelReply, Prompt},
    rules::describe,
    settings::Settings,
};

/// Which of a snapshot's incidents to ask the model about, with what
/// Nanny already tried, and whether to keep the exchange for debugging.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask<'a> {
    /// Fingerprints; empty: every incident.
    pub only: &'a [String],
    /// Nanny's recent actions, newest first.
    pub tried: &'a [TriedAction],
    /// Keep the exchange about the most severe incident asked.
    pub debug: bool,
}

impl Analysis {
    /// Asks the model, when one is enabled, about each incident of
    /// `snapshot`, and merges its validated answers with `rules` (the rule
    /// recommendations for the same snapshot): agreement adds the model's
    /// confirmation to the rule recommendation, a model-only proposal is
    /// marked novel, a different action on a target a rule already covers
    /// is kept and marked as a disagreement on both. Every recommendation
    /// of an answered incident carries its explanation. With `debug`, the
    /// answer carries the exchange about the most severe incident. A
    /// non-empty `only` limits the questions to those incidents (the others
    /// are another replica's).
    pub async fn consult_model(
        &self,
        snapshot: &ClusterSnapshot,
        rules: &mut [Recommendation],
        now: SystemTime,
        settings: &Settings,
        ask: Ask<'_>,
    ) -> ModelAnswer {
        let Ask { only, tried, debug } = ask;
        let Some(scheduler) = self.models.get(&settings.model.model) else {
            return ModelAnswer::skipped(debug, "disabled");
        };
        let index = SnapshotIndex::new(snapshot);
        let asked: Vec<(Incident<'_>, Prompt)> =
            incident::correlate(snapshot, &index, settings.triggers.as_ref(), tried)
                .into_iter()
                .filter(|incident| only.is_empty() || only.contains(&incident.fingerprint))
                .filter_map(|incident| {
                    let covered = rule_actions(rules, &incident);
                    let prompt = llm::build_prompt(
                        &incident,
                        &covered,
                        snapshot,
                        &index,
                        settings,
                        self.prompt_chars,
                    )?;
                    Some((incident, prompt))
                })
                .collect();
        if asked.is_empty() {
            return ModelAnswer::skipped(debug, "no_prompt");
        }
        let answers = futures::future::join_all(asked.iter().map(|(incident, prompt)| {
            scheduler.ask(Job {
                incident: incident.fingerprint.clone(),
                severity: incident.severity,
                first_seen: incident.first_seen,
                prompt: prompt.clone(),
            })
        }))
        .await;
        let info = scheduler.client().info();
        let mut answer = ModelAnswer::default();
        let mut separate = Vec::new();
        let mut answered = false;
        for (n, ((incident, prompt), reply)) in asked.iter().zip(answers).enumerate() {
            let mut rejected = Vec::new();
            if let Ok(reply) = &reply {
                answered = true;
                let valid = self.accept(
                    &reply.reply,
                    incident,
                    prompt,
                    snapshot,
                    &index,
                    settings,
                    &info,
                    now,
                    &mut rejected,
                );
                let explanation = self.explanation(&reply.reply, incident, &info);
                separate.extend(merge(
                    rules,
                    valid,
                    &info,
                    incident,
                    explanation.as_ref(),
                    reply.reply.agrees,
                ));
            }
            answer
                .outcomes
                .insert(incident.fingerprint.clone(), outcome(&reply).to_owned());
            if debug && n == 0 {
                answer.exchange = Some(exchange(scheduler.client(), prompt, &reply, rejected));
            }
        }
        answer.separate = answered.then_some(separate);
        answer
    }

    /// `snapshot`'s incidents under `settings`' triggers: what
    /// [`Self::consult_model`] would ask about, each with a version that
    /// changes with its material evidence (what was `tried` included) and
    /// the actions `rules` take on it.
    /// Each of `rules` is marked with the incident it addresses.
    pub fn incidents(
        &self,
        snapshot: &ClusterSnapshot,
        rules: &mut [Recommendation],
        settings: &Settings,
        tried: &[TriedAction],
    ) -> Vec<IncidentRef> {
        let index = SnapshotIndex::new(snapshot);
        incident::correlate(snapshot, &index, settings.triggers.as_ref(), tried)
            .into_iter()
            .map(|incident| {
                for rule in rules.iter_mut() {
                    if rule
                        .issue_fingerprints
                        .iter()
                        .any(|f| incident.has_issue(f))
                    {
                        rule.incident.clone_from(&incident.fingerprint);
                    }
                }
                let mut hasher = Sha256::new();
                hasher.update(incident.material().as_bytes());
                for covered in rule_actions(rules, &incident) {
                    hasher.update(format!("\n{} {}", covered.action, covered.target));
                }
                let version = hasher
                    .finalize()
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                IncidentRef {
                    fingerprint: incident.fingerprint,
                    version,
                }
            })
            .collect()
    }

    /// The proposals of `reply` that address `incident` and pass validation;
    /// each refusal is counted and, for debugging, named in `rejected`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one reply checked against its incident, prompt, snapshot and policy: each is a separate fact the check needs"
    )]
    fn accept(
        &self,
        reply: &ModelReply,
        incident: &Incident<'_>,
        prompt: &Prompt,
        snapshot: &ClusterSnapshot,
        index: &SnapshotIndex<'_>,
        settings: &Settings,
        info: &ModelInfo,
        now: SystemTime,
        rejected: &mut Vec<String>,
    ) -> Vec<Recommendation> {
        // What the prompt's schema allowed: none where the rules act.
        let limit = prompt
            .schema
            .pointer("/properties/recommendations/maxItems")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let bounds = settings.bounds();
        let mut valid = Vec::new();
        for (n, item) in reply.recommendations.iter().enumerate() {
            let checked = if n >= limit {
                Err("over_max_recommendations")
            } else if prompt
                .fingerprints
                .binary_search(&item.issue_fingerprint)
                .is_err()
            {
                // Only the issues the prompt offered (its incident's, under
                // the policy's triggers).
                Err("issue_not_in_prompt")
            } else if !incident.has_object(&item.target_uid) {
                Err("target_not_in_incident")
            } else {
                llm::to_recommendation(item, snapshot, index, settings, info)
                    .map_err(llm::Rejected::label)
            };
            let checked = checked
                .inspect_err(|reason| self.validator.count(reason))
                .and_then(|mut recommendation| {
                    recommendation.created_at = Some(now.into());
                    // Counts its own refusals.
                    self.validator
                        .check(&recommendation, index, &bounds, now)
                        .map_err(|invalid| invalid.label())?;
                    Ok(recommendation)
                });
            match checked {
                Ok(recommendation) => valid.push(recommendation),
                Err(reason) => {
                    rejected.push(format!(
                        "#{n} {} on {}: {reason}",
                        item.action, item.target_uid
                    ));
                }
            }
        }
        valid
    }

    /// The explanation of `reply` for `incident`, or `None` (counted) when
    /// it has no hypothesis or cites evidence the incident did not carry.
    fn explanation(
        &self,
        reply: &ModelReply,
        incident: &Incident<'_>,
        info: &ModelInfo,
    ) -> Option<Explanation> {
        let hypothesis = reply.hypothesis.trim();
        if hypothesis.is_empty() {
            self.explanations.with_label_values(&["missing"]).inc();
            return None;
        }
        let mut cited = Vec::new();
        for id in &reply.cited {
            let Some(item) = incident.evidence(id) else {
                self.explanations.with_label_values(&["bad_citation"]).inc();
                return None;
            };
            let line = item.cited();
            if !cited.contains(&line) {
                cited.push(line);
            }
        }
        self.explanations.with_label_values(&["attached"]).inc();
        Some(Explanation {
            incident: incident.fingerprint.clone(),
            hypothesis: hypothesis.chars().take(MAX_HYPOTHESIS_CHARS).collect(),
            risk: reply.risk.trim().chars().take(MAX_RISK_CHARS).collect(),
            cited_evidence: cited,
            model: Some(ModelSource {
                provider: info.provider.to_owned(),
                model: info.model.clone(),
                digest: info.digest.clone(),
                prompt_version: llm::PROMPT_VERSION.to_owned(),
            }),
            agreement: Agreement::Unspecified as i32,
        })
    }
}

/// The actions the rules chose for `incident`'s issues.
fn rule_actions(rules: &[Recommendation], incident: &Incident<'_>) -> Vec<llm::RuleAction> {
    let mut actions: Vec<llm::RuleAction> = rules
        .iter()
        .filter(|r| r.issue_fingerprints.iter().any(|f| incident.has_issue(f)))
        .map(|r| llm::RuleAction {
            action: steps_of(r).join(" then "),
            target: r.target.as_ref().map(describe).unwrap_or_default(),
        })
        .collect();
    actions.sort_by(|a, b| (&a.action, &a.target).cmp(&(&b.action, &b.target)));
    actions.dedup();
    actions
}

fn outcome(answer: &Answer) -> &'static str {
    match answer {
        Ok(answered) if answered.cached => "cache_hit",
        Ok(_) => "ok",
        Err(failure) => failure.outcome,
    }
}

fn exchange(
    client: &llm::ModelClient,
    prompt: &Prompt,
    answer: &Answer,
    rejected: Vec<String>,
) -> ModelExchange {
    let mut exchange = ModelExchange {
        provider: client.provider().to_owned(),
        model: client.model().to_owned(),
        prompt_version: llm::PROMPT_VERSION.to_owned(),
        system_prompt: prompt.system.clone(),
        user_prompt: prompt.user.clone(),
        response_schema: prompt.schema.to_string(),
        outcome: outcome(answer).to_owned(),
        incident: prompt.incident.clone(),
        rejected,
        ..ModelExchange::default()
    };
    match answer {
        Ok(answered) => {
            exchange.raw_reply.clone_from(&answered.reply.raw);
            exchange.prompt_tokens = answered.reply.usage.prompt_tokens;
            exchange.completion_tokens = answered.reply.usage.completion_tokens;
            exchange.wait_seconds = answered.wait.as_secs_f64();
            exchange.run_seconds = answered.run.as_secs_f64();
        }
        Err(failure) => {
            exchange.raw_reply.clone_from(&failure.raw);
            exchange.error.clone_from(&failure.error);
            exchange.wait_seconds = failure.wait.as_secs_f64();
            exchange.run_seconds = failure.run.as_secs_f64();
        }
    }
    exchange
}

/// Merges the validated model recommendations of one incident into the
/// rule ones; returns those that stay separate. A model proposal agrees
/// with a rule's on the same target that takes the same steps (a plan only
/// with the same plan). Every recommendation of the incident gets
/// `explanation`, with the model's agreement.
fn merge(
    rules: &mut [Recommendation],
    model: Vec<Recommendation>,
    info: &ModelInfo,
    incident: &Incident<'_>,
    explanation: Option<&Explanation>,
    agrees: Option<bool>,
) -> Vec<Recommendation> {
    let explained = |agreement: Agreement| {
        explanation.map(|e| Explanation {
            agreement: agreement as i32,
            ..e.clone()
        })
    };
    // Each rule recommendation of the incident: what the model said of it,
    // when asked whether it agrees, else of its target.
    let said = match agrees {
        Some(true) => Agreement::Agrees,
        Some(false) => Agreement::Disagrees,
        None => Agreement::Silent,
    };
    let mut agreement: BTreeMap<usize, Agreement> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.issue_fingerprints.iter().any(|f| incident.has_issue(f)))
        .map(|(i, _)| (i, said))
        .collect();
    let mut separate = Vec::new();
    for mut candidate in model {
        candidate.incident.clone_from(&incident.fingerprint);
        let same_target: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| target_uid(r) == target_uid(&candidate))
            .map(|(i, _)| i)
            .collect();
        if let Some(agreeing) = same_target
            .iter()
            .find(|i| steps_of(&rules[**i]) == steps_of(&candidate))
        {
            rules[*agreeing].evidence_refs.push(format!(
                "model:{} agrees (confidence {})",
                info.model, candidate.confidence
            ));
            agreement.insert(*agreeing, Agreement::Agrees);
            continue;
        }
        if same_target.is_empty() {
            candidate
                .evidence_refs
                .push("novel: no rule proposed an action for this target".to_owned());
            candidate.explanation = explained(Agreement::ModelOnly);
        } else {
            for i in &same_target {
                let rule = rule_id(&rules[*i]).to_owned();
                candidate
                    .evidence_refs
                    .push(format!("disagrees-with-rule:{rule}"));
                rules[*i]
                    .evidence_refs
                    .push(format!("model:{} disagrees", info.model));
                agreement
                    .entry(*i)
                    .and_modify(|a| {
                        if *a != Agreement::Agrees {
                            *a = Agreement::Disagrees;
                        }
                    })
                    .or_insert(Agreement::Disagrees);
            }
            candidate.explanation = explained(Agreement::Disagrees);
        }
        separate.push(candidate);
    }
    for (i, agreement) in agreement {
        if rules[i].explanation.is_none() {
            rules[i].explanation = explained(agreement);
        }
    }
    separate
}
