use nanny_proto::v1::AllowedAction;

use super::*;

fn config() -> Config {
    let mut config = Config::default();
    config.llm.allowed_models = vec!["qwen2.5:0.5b".to_owned()];
    config
}

fn allowed(t: ActionType) -> AllowedAction {
    AllowedAction {
        r#type: t as i32,
        ..AllowedAction::default()
    }
}

fn resolve(policy: &AnalysisSettings) -> Result<Settings, Error> {
    Settings::resolve(&config(), Some(policy), true)
}

fn error(policy: &AnalysisSettings) -> String {
    resolve(policy).unwrap_err().to_string()
}

#[test]
fn without_a_policy_the_configuration_applies() {
    let s = Settings::resolve(&config(), None, true).unwrap();
    assert_eq!(s.rules.oom.factor, 1.5);
    assert_eq!(s.triggers, None);
    assert_eq!(s.model.model, "smollm2:135m");
    assert_eq!(s.model.actions, *MODEL_ACTIONS);
    assert!(s.model.guidance.is_empty());
}

#[test]
fn a_policy_tunes_the_rules_and_the_model() {
    let policy = AnalysisSettings {
        model: "qwen2.5:0.5b".into(),
        min_confidence: Some(0.9),
        max_recommendations: Some(2),
        prompts: [(
            "memoryAnalysis".to_owned(),
            "  Look for leaks.  ".to_owned(),
        )]
        .into(),
        allowed_actions: vec![
            allowed(ActionType::ScaleHpa),
            allowed(ActionType::ReportOnly),
        ],
        triggers: vec![IssueKind::HpaAtMax as i32],
        rules: Some(RuleOverrides {
            disabled: vec!["pvc-expand".into()],
            crashloop_min_restarts: Some(7),
            oom_memory_factor: Some(2.0),
            stale_job_min_age_seconds: Some(172_800),
            pvc_usage_percent: Some(70.0),
            drain_not_ready: Some(false),
            ..RuleOverrides::default()
        }),
    };
    let s = resolve(&policy).unwrap();
    assert_eq!(s.rules.crashloop.min_restarts, 7);
    assert_eq!(s.rules.oom.factor, 2.0);
    assert_eq!(s.rules.stale_job.min_age_secs, 172_800);
    assert_eq!(s.bounds().min_job_age_secs, 172_800);
    assert_eq!(s.rules.pvc.usage_percent, 70.0);
    assert!(!s.rules.node.drain_not_ready);
    assert!(s.rules.disabled.contains("pvc-expand"));
    assert_eq!(s.triggers, Some([IssueKind::HpaAtMax as i32].into()));
    assert_eq!(
        s.model,
        ModelSettings {
            model: "qwen2.5:0.5b".into(),
            min_confidence: 0.9,
            max_recommendations: 2,
            actions: vec!["report_only", "scale_hpa"],
            guidance: [("memoryAnalysis", "Look for leaks.".to_owned())].into(),
        }
    );
    let kinds = [IssueKind::OomKilled as i32].into();
    assert_eq!(
        s.model.guidance_for(&kinds),
        [("memoryAnalysis", "Look for leaks.")]
    );
    assert!(
        s.model
            .guidance_for(&[IssueKind::HpaAtMax as i32].into())
            .is_empty()
    );
}

#[test]
fn ceilings_only_ever_lower_the_analyzers_own() {
    let policy = AnalysisSettings {
        allowed_actions: vec![
            AllowedAction {
                max_memory_bytes: Some(2 << 30),
                ..allowed(ActionType::PatchResources)
            },
            AllowedAction {
                max_replicas: Some(1_000_000),
                ..allowed(ActionType::ScaleHpa)
            },
            AllowedAction {
                max_storage_bytes: Some(0),
                ..allowed(ActionType::ExpandPvc)
            },
        ],
        ..AnalysisSettings::default()
    };
    let s = resolve(&policy).unwrap();
    assert_eq!(s.rules.oom.max_memory_bytes, 2 << 30);
    assert_eq!(s.bounds().max_memory_bytes, 2 << 30);
    assert_eq!(
        s.rules.hpa.max_replicas, 100,
        "the configuration's ceiling holds"
    );
    assert_eq!(s.rules.pvc.max_storage_bytes, 0);
}

#[test]
fn a_policy_that_allows_nothing_offers_the_model_only_reports() {
    let s = resolve(&AnalysisSettings::default()).unwrap();
    assert_eq!(s.model.actions, ["report_only"]);
}

#[test]
fn out_of_range_fields_are_refused_by_name() {
    let rules = |o: RuleOverrides| AnalysisSettings {
        rules: Some(o),
        ..AnalysisSettings::default()
    };
    assert_eq!(
        error(&rules(RuleOverrides {
            oom_memory_factor: Some(10.0),
            ..RuleOverrides::default()
        })),
        "settings.rules.oom_memory_factor: must be between 1 and 4"
    );
    assert!(
        error(&rules(RuleOverrides {
            disabled: vec!["delete-everything".into()],
            ..RuleOverrides::default()
        }))
        .starts_with("settings.rules.disabled: unknown rule id \"delete-everything\" (known: crashloop-restart,")
    );
    assert_eq!(
        error(&rules(RuleOverrides {
            stale_job_min_age_seconds: Some(3600),
            ..RuleOverrides::default()
        })),
        "settings.rules.stale_job_min_age_seconds: must be between 86400 and 31536000",
        "a policy cannot lower the configuration's floor"
    );
    assert!(
        error(&rules(RuleOverrides {
            crashloop_min_restarts: Some(0),
            ..RuleOverrides::default()
        }))
        .contains("crashloop_min_restarts")
    );
    assert!(
        error(&rules(RuleOverrides {
            pvc_usage_percent: Some(f64::NAN),
            ..RuleOverrides::default()
        }))
        .contains("pvc_usage_percent")
    );
    let model = |p: AnalysisSettings| error(&p);
    assert!(
        model(AnalysisSettings {
            model: "gpt-9".into(),
            ..AnalysisSettings::default()
        })
        .starts_with("settings.model: \"gpt-9\" is neither llm.model")
    );
    assert!(
        model(AnalysisSettings {
            min_confidence: Some(1.5),
            ..AnalysisSettings::default()
        })
        .contains("settings.min_confidence")
    );
    assert!(
        model(AnalysisSettings {
            max_recommendations: Some(0),
            ..AnalysisSettings::default()
        })
        .contains("settings.max_recommendations")
    );
    assert!(
        model(AnalysisSettings {
            prompts: [("jvmAnalysis".to_owned(), "x".to_owned())].into(),
            ..AnalysisSettings::default()
        })
        .starts_with("settings.prompts: unknown scenario \"jvmAnalysis\" (known: general,")
    );
    assert_eq!(
        model(AnalysisSettings {
            prompts: [("general".to_owned(), "x".repeat(MAX_GUIDANCE_CHARS + 1))].into(),
            ..AnalysisSettings::default()
        }),
        "settings.prompts[general]: longer than 2000 characters"
    );
}

#[test]
fn a_policy_cannot_switch_on_drains_the_configuration_switched_off() {
    let mut config = config();
    config.rules.node.drain_not_ready = false;
    let policy = AnalysisSettings {
        rules: Some(RuleOverrides {
            drain_not_ready: Some(true),
            ..RuleOverrides::default()
        }),
        ..AnalysisSettings::default()
    };
    let s = Settings::resolve(&config, Some(&policy), true).unwrap();
    assert!(!s.rules.node.drain_not_ready);
}

#[test]
fn model_fields_are_not_checked_for_rules_only_requests() {
    let policy = AnalysisSettings {
        model: "gpt-9".into(),
        ..AnalysisSettings::default()
    };
    assert!(Settings::resolve(&config(), Some(&policy), false).is_ok());
    assert!(Settings::resolve(&config(), Some(&policy), true).is_err());
}

#[test]
fn every_scenario_is_distinct_and_no_issue_kind_is_in_two() {
    let mut seen = BTreeSet::new();
    for (name, kinds) in SCENARIOS {
        assert!(seen.insert(*name), "{name} twice");
        for kind in *kinds {
            let others = SCENARIOS.iter().filter(|(_, k)| k.contains(kind)).count();
            assert_eq!(others, 1, "{kind:?}");
        }
    }
}

/// The names quoted in the CEL rule of the HealingPolicy CRD that starts
/// with `prefix`: what `kubectl apply` lets through.
fn crd_allows(prefix: &str) -> Vec<String> {
    let crd = include_str!("../../../../deploy/crds/healingpolicies.nanny.ai.yaml");
    let line = crd
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("rule: ")?.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no CEL rule starting with {prefix}"));
    line.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_crd_admits_exactly_the_rule_ids_and_scenarios_the_analyzer_knows() {
    let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(crd_allows("self.all(id, id in ["), ids);
    let scenarios: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    assert_eq!(crd_allows("self.all(k, k in ["), scenarios);
}
