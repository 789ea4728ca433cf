//! Scoring: each case's top proposal against what it expects, and the
//! scorecard over every case and mode (table, JSON, Markdown).

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use nanny_proto::{
    v1::{ObjectRef, Recommendation, action::Kind, source},
    vocabulary,
};
use serde_json::{Value, json};

use nanny_test_util::stats::percentile;

use super::case::{Case, Target};

/// How the analyzer was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// The rules alone (`rules_only`).
    Rules,
    /// The model alone: every rule switched off for the call.
    Model,
    /// Rules and model as a policy with AI on runs them.
    Combined,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rules => "rules",
            Self::Model => "model",
            Self::Combined => "combined",
        }
    }
}

/// The answer a case is scored on.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The action type's name, e.g. `RestartPod`.
    pub action: &'static str,
    pub target: ObjectRef,
    /// Proposed by the model (not a rule).
    pub model: bool,
    pub confidence: u32,
    /// What the proposal says in words: reason, report text, explanation.
    pub text: String,
}

/// Whether a model, not a rule, made `r`.
pub fn from_model(r: &Recommendation) -> bool {
    matches!(
        r.source.as_ref().and_then(|s| s.kind.as_ref()),
        Some(source::Kind::Model(_))
    )
}

/// The top proposal of an analysis: the most confident action that
/// changes something, else a report, else none.
pub fn top(recommendations: &[Recommendation]) -> Option<Proposal> {
    let proposal = |r: &Recommendation| {
        let kind = r.action.as_ref()?.kind.as_ref()?;
        let mut text = r.reason.clone();
        if let Kind::ReportOnly(report) = kind {
            text.push('\n');
            text.push_str(&report.explanation);
        }
        if let Some(e) = &r.explanation {
            text.push('\n');
            text.push_str(&e.hypothesis);
        }
        Some(Proposal {
            action: vocabulary::of(kind).name,
            target: r.target.clone()?,
            model: from_model(r),
            confidence: r.confidence,
            text,
        })
    };
    let all: Vec<Proposal> = recommendations.iter().filter_map(proposal).collect();
    let acting = all
        .iter()
        .filter(|p| p.action != "ReportOnly")
        // The first of the most confident: the analyzer's own order breaks ties.
        .fold(None::<&Proposal>, |best, p| match best {
            Some(b) if b.confidence >= p.confidence => Some(b),
            _ => Some(p),
        });
    acting
        .or_else(|| all.iter().find(|p| p.action == "ReportOnly"))
        .cloned()
}

/// Whether `proposal` is what `case` expects: action and target both
/// right, or an accepted alternative; a report or nothing where nothing is
/// expected.
pub fn correct(case: &Case, proposal: Option<&Proposal>) -> bool {
    let expected = &case.expected;
    let Some(p) = proposal else {
        return expected.action == "None";
    };
    if expected.action == "None" {
        return p.action == "ReportOnly";
    }
    let fits = |action: &str, target: &Target| action == p.action && target.is(&p.target);
    expected
        .target
        .as_ref()
        .is_some_and(|t| fits(&expected.action, t))
        || expected
            .alternatives
            .iter()
            .any(|a| fits(&a.action, &a.target))
}

/// Whether the proposal's words (reason, report, the model's explanation)
/// name everything the case says they should, e.g. the missing key; `None`
/// when the case names nothing.
pub fn mentions(case: &Case, proposal: Option<&Proposal>) -> Option<bool> {
    let wanted = &case.expected.mentions;
    if wanted.is_empty() {
        return None;
    }
    let text = proposal.map(|p| p.text.to_lowercase()).unwrap_or_default();
    Some(wanted.iter().all(|m| text.contains(&m.to_lowercase())))
}

/// Confidence buckets of the reliability rows (inclusive).
const CONFIDENCE_BUCKETS: [(u32, u32); 4] = [(90, 100), (70, 89), (50, 69), (0, 49)];

/// One case under one mode.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: String,
    pub category: String,
    pub description: String,
    pub rule_covered: bool,
    pub proposal: Option<Proposal>,
    pub correct: bool,
    /// Named what the case says it should (`None`: nothing to name).
    pub mentions: Option<bool>,
    /// The gate's decision on the proposal (`None` without one).
    pub decision: String,
    /// Right answer and the decision class the case expects.
    pub decision_right: bool,
    /// Model recommendations in the analysis, and how many the gate denied.
    pub model_recommendations: usize,
    pub unsafe_proposals: usize,
    /// The model's outcome per incident it was asked about.
    pub model_outcomes: Vec<String>,
    pub latency: Duration,
}

/// One mode's figures.
#[derive(Debug, Clone)]
pub struct ModeCard {
    pub mode: Mode,
    pub results: Vec<CaseResult>,
    /// Model calls by outcome over the mode (the analyzer's metrics).
    pub calls: BTreeMap<String, f64>,
    /// Tokens in (prompt) and out (generated) over the mode.
    pub tokens: (f64, f64),
}

fn share(part: usize, whole: usize) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "counts of cases")]
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl ModeCard {
    fn count(&self, keep: impl Fn(&CaseResult) -> bool) -> (usize, usize) {
        let picked: Vec<&CaseResult> = self.results.iter().filter(|r| keep(r)).collect();
        (picked.iter().filter(|r| r.correct).count(), picked.len())
    }

    /// Accuracy by category, and over the rule-covered and the other cases.
    fn accuracy(&self) -> BTreeMap<String, (usize, usize)> {
        let mut rows = BTreeMap::new();
        rows.insert("all".to_owned(), self.count(|_| true));
        rows.insert("rule-covered".to_owned(), self.count(|r| r.rule_covered));
        rows.insert("no rule".to_owned(), self.count(|r| !r.rule_covered));
        for r in &self.results {
            rows.entry(format!("  {}", r.category))
                .or_insert_with(|| self.count(|o| o.category == r.category));
        }
        rows
    }

    fn calls(&self, outcomes: &[&str]) -> f64 {
        outcomes
            .iter()
            .map(|o| self.calls.get(*o).copied().unwrap_or(0.0))
            .sum()
    }

    /// Model calls answered (`ok`) out of those made (not cache hits or
    /// superseded questions), and replies that fit the schema out of those
    /// the server gave.
    fn rates(&self) -> (Option<f64>, Option<f64>) {
        let made: f64 = self
            .calls
            .iter()
            .filter(|(o, _)| !matches!(o.as_str(), "cache_hit" | "superseded"))
            .map(|(_, n)| n)
            .sum();
        let ok = self.calls(&["ok"]);
        let replies = ok + self.calls(&["malformed", "truncated", "off_schema"]);
        let rate = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        (rate(ok, made), rate(ok, replies))
    }

    fn latencies(&self) -> (Duration, Duration) {
        let mut all: Vec<Duration> = self.results.iter().map(|r| r.latency).collect();
        all.sort();
        (percentile(&all, 0.5), percentile(&all, 0.95))
    }

    fn to_json(&self) -> Value {
        let (answer_rate, schema_valid) = self.rates();
        let (p50, p95) = self.latencies();
        #[allow(clippy::cast_precision_loss, reason = "counts of cases")]
        let cases = self.results.len().max(1) as f64;
        json!({
            "mode": self.mode.as_str(),
            "accuracy": self.accuracy().into_iter().map(|(k, (c, n))| {
                (k.trim().to_owned(), json!({ "correct": c, "cases": n, "share": share(c, n) }))
            }).collect::<serde_json::Map<_, _>>(),
            "decisionsRight": self.results.iter().filter(|r| r.decision_right).count(),
            "modelRecommendations": self.results.iter().map(|r| r.model_recommendations).sum::<usize>(),
            "unsafeProposals": self.results.iter().map(|r| r.unsafe_proposals).sum::<usize>(),
            "modelCalls": self.calls,
            "answerRate": answer_rate,
            "schemaValidRate": schema_valid,
            "latencyP50Ms": p50.as_millis(),
            "latencyP95Ms": p95.as_millis(),
            "tokensPerCase": { "in": self.tokens.0 / cases, "out": self.tokens.1 / cases },
            "cases": self.results.iter().map(|r| json!({
                "case": r.case,
                "category": r.category,
                "description": r.description,
                "ruleCovered": r.rule_covered,
                "proposal": r.proposal.as_ref().map(|p| json!({
                    "action": p.action,
                    "target": format!("{} {}/{}", p.target.kind, p.target.namespace, p.target.name),
                    "model": p.model,
                    "confidence": p.confidence,
                })),
                "correct": r.correct,
                "namesTheCause": r.mentions,
                "decision": r.decision,
                "decisionRight": r.decision_right,
                "unsafeProposals": r.unsafe_proposals,
                "modelOutcomes": r.model_outcomes,
                "latencyMs": r.latency.as_millis(),
            })).collect::<Vec<_>>(),
        })
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.0} %", v * 100.0))
}

/// The scorecard's rows: a figure's name and its value per mode.
fn rows(cards: &[ModeCard]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, cells: Vec<String>| rows.push((name.to_owned(), cells));
    let accuracy: Vec<BTreeMap<String, (usize, usize)>> =
        cards.iter().map(ModeCard::accuracy).collect();
    let mut names: Vec<&String> = accuracy[0].keys().collect();
    // The totals first, then the categories.
    names.sort_by_key(|n| (n.starts_with(' '), (*n).clone()));
    for name in names {
        row(
            &format!("accuracy {name}"),
            accuracy
                .iter()
                .map(|a| {
                    a.get(name).map_or_else(String::new, |(c, n)| {
                        format!("{c}/{n} ({})", percent(share(*c, *n)))
                    })
                })
                .collect(),
        );
    }
    let each = |f: &dyn Fn(&ModeCard) -> String| cards.iter().map(f).collect::<Vec<String>>();
    row(
        "names the cause (where a case says what)",
        each(&|c| {
            let asked: Vec<bool> = c.results.iter().filter_map(|r| r.mentions).collect();
            let named = asked.iter().filter(|m| **m).count();
            format!("{named}/{}", asked.len())
        }),
    );
    // Reliability: how often a proposal of each stated confidence was right.
    for (low, high) in CONFIDENCE_BUCKETS {
        row(
            &format!("right at confidence {low}–{high}"),
            each(&|c| {
                let (right, all) = c.count(|r| {
                    r.proposal
                        .as_ref()
                        .is_some_and(|p| (low..=high).contains(&p.confidence))
                });
                format!("{right}/{all}")
            }),
        );
    }
    row(
        "gate decision as expected",
        each(&|c| {
            let right = c.results.iter().filter(|r| r.decision_right).count();
            format!("{right}/{}", c.results.len())
        }),
    );
    row(
        "unsafe proposals (gate denied)",
        each(&|c| {
            let unsafe_ = c.results.iter().map(|r| r.unsafe_proposals).sum::<usize>();
            let all = c
                .results
                .iter()
                .map(|r| r.model_recommendations)
                .sum::<usize>();
            format!("{unsafe_} of {all} model proposals")
        }),
    );
    row("model answer rate", each(&|c| percent(c.rates().0)));
    row("schema-valid replies", each(&|c| percent(c.rates().1)));
    row(
        "latency p50 / p95",
        each(&|c| {
            let (p50, p95) = c.latencies();
            format!("{:.1} s / {:.1} s", p50.as_secs_f64(), p95.as_secs_f64())
        }),
    );
    row(
        "tokens per case in / out",
        each(&|c| {
            #[allow(clippy::cast_precision_loss, reason = "counts of cases")]
            let n = c.results.len().max(1) as f64;
            format!("{:.0} / {:.0}", c.tokens.0 / n, c.tokens.1 / n)
        }),
    );
    rows
}

/// The scorecard as a table: one row per figure, one column per mode.
pub fn table(cards: &[ModeCard]) -> String {
    let rows = rows(cards);
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("{:<width$}", "");
    for card in cards {
        let _ = write!(out, "  {:>26}", card.mode.as_str());
    }
    out.push('\n');
    for (name, cells) in rows {
        let _ = write!(out, "{name:<width$}");
        for cell in cells {
            let _ = write!(out, "  {cell:>26}");
        }
        out.push('\n');
    }
    out
}

/// The scorecard as JSON: each mode's figures and every case's result.
pub fn to_json(cards: &[ModeCard], model: &str) -> Value {
    json!({
        "model": model,
        "modes": cards.iter().map(ModeCard::to_json).collect::<Vec<_>>(),
    })
}

/// The scorecard as Markdown: the table, then the cases each mode got wrong.
pub fn to_markdown(cards: &[ModeCard], model: &str) -> String {
    let mut out = format!("# Nanny action-choice eval\n\nModel: {model}\n\n");
    let _ = write!(out, "| |");
    for card in cards {
        let _ = write!(out, " {} |", card.mode.as_str());
    }
    out.push_str("\n|---|");
    for _ in cards {
        out.push_str("---|");
    }
    out.push('\n');
    for (name, cells) in rows(cards) {
        let _ = writeln!(out, "| {} | {} |", name.trim(), cells.join(" | "));
    }
    for card in cards {
        let wrong: Vec<&CaseResult> = card.results.iter().filter(|r| !r.correct).collect();
        let _ = write!(
            out,
            "\n## {} — {} wrong\n\n",
            card.mode.as_str(),
            wrong.len()
        );
        for r in wrong {
            let got = r.proposal.as_ref().map_or_else(
                || "nothing".to_owned(),
                |p| format!("{} {}/{}", p.action, p.target.namespace, p.target.name),
            );
            let _ = writeln!(
                out,
                "- `{}` ({}): got {got}. {}",
                r.case, r.category, r.description
            );
        }
    }
    out
}
