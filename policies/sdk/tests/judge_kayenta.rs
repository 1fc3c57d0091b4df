//! Kayenta's judge on Kayenta's own canary configs, and on the cases its
//! users reported, with the labels Kayenta gave them.

use shipgate_policy::judge::{self, CanaryConfig, Label, MetricPair, Thresholds};

fn configs() -> Vec<(String, CanaryConfig)> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kayenta-configs"
    );
    let mut configs: Vec<(String, CanaryConfig)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let config =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                config,
            )
        })
        .collect();
    configs.sort_by(|a, b| a.0.cmp(&b.0));
    configs
}

#[test]
fn every_canary_config_in_kayentas_repository_loads_and_judges() {
    let configs = configs();
    assert_eq!(configs.len(), 13);
    for (file, config) in configs {
        let rules = config.rules();
        assert!(!rules.is_empty(), "{file}: no metrics");
        // A healthy canary: the same distribution shifted by nothing.
        let pairs: Vec<MetricPair> = rules
            .iter()
            .map(|rule| MetricPair {
                name: rule.name.clone(),
                canary: (0..60).map(|i| 10.0 + f64::from(i % 9)).collect(),
                baseline: (0..60).map(|i| 10.0 + f64::from((i + 4) % 9)).collect(),
            })
            .collect();
        let thresholds = config.classifier.score_thresholds.unwrap_or_default();
        let judgement =
            judge::judge_kayenta(&rules, &pairs, &config.classifier.group_weights, thresholds);
        assert_eq!(judgement.metrics.len(), rules.len(), "{file}");
        assert!(
            judgement.metrics.iter().all(|m| m.label == Label::Pass),
            "{file}: {:?}",
            judgement.metrics
        );
        // Weights not summing to 100 are Kayenta's to keep: only check
        // that a config whose weights do sum to 100 scores 100.
        let weights: f64 = config.classifier.group_weights.values().sum();
        if weights == 100.0 || config.classifier.group_weights.is_empty() {
            assert_eq!(judgement.score, 100.0, "{file}");
        }
    }
}

#[test]
fn group_weights_decide_how_much_a_failing_metric_costs() {
    // kayenta-integration-tests' prometheus cpu config has two groups of
    // weights 60 and 40; its muted-metric config one group of 100.
    let rules: Vec<judge::MetricRule> = serde_json::from_value(serde_json::json!([
        {"name": "errors", "groups": ["errors"], "direction": "increase"},
        {"name": "latency", "groups": ["latency"], "direction": "increase"},
        {"name": "cpu", "groups": ["system"], "direction": "increase"}
    ]))
    .unwrap();
    let healthy: Vec<f64> = (0..60).map(|i| 10.0 + f64::from(i % 9)).collect();
    let worse: Vec<f64> = healthy.iter().map(|v| v * 3.0).collect();
    let pair = |name: &str, canary: &[f64]| MetricPair {
        name: name.into(),
        canary: canary.to_vec(),
        baseline: healthy.clone(),
    };
    let pairs = [
        pair("errors", &worse),
        pair("latency", &healthy),
        pair("cpu", &healthy),
    ];
    // 60 configured for errors, 30 for latency, and the unconfigured group
    // shares the 10 left: a High in errors costs 60 points.
    let weights = std::collections::BTreeMap::from([
        ("errors".to_string(), 60.0),
        ("latency".to_string(), 30.0),
    ]);
    let judgement = judge::judge_kayenta(&rules, &pairs, &weights, Thresholds::default());
    assert_eq!(judgement.score, 40.0, "{judgement:?}");
    assert_eq!(judgement.classification, judge::Classification::Fail);
    let light = std::collections::BTreeMap::from([
        ("errors".to_string(), 20.0),
        ("latency".to_string(), 40.0),
    ]);
    let judgement = judge::judge_kayenta(&rules, &pairs, &light, Thresholds::default());
    assert_eq!(
        (judgement.score, judgement.classification),
        (80.0, judge::Classification::Pass)
    );
}

fn judge_one(canary: Vec<f64>, baseline: Vec<f64>) -> judge::MetricResult {
    let rules: Vec<judge::MetricRule> = serde_json::from_str(r#"[{"name": "m"}]"#).unwrap();
    let pair = MetricPair {
        name: "m".into(),
        canary,
        baseline,
    };
    let judgement =
        judge::judge_kayenta(&rules, &[pair], &Default::default(), Thresholds::default());
    judgement.metrics.into_iter().next().unwrap()
}

#[test]
fn the_cases_kayentas_users_reported_get_kayentas_labels() {
    // spinnaker#6278: 7 of 10 canary points at 100 against all 1 passed.
    let mut seven = vec![100.0; 7];
    seven.extend([1.0; 3]);
    let result = judge_one(seven, vec![1.0; 10]);
    assert_eq!(result.label, Label::Pass);
    assert!((result.figures.ci_lower.unwrap() - 6.825022991538781e-5).abs() < 1e-12);
    assert!((result.figures.estimate.unwrap() - 98.99992904170193).abs() < 1e-6);
    // ... and 8 of 10 failed.
    let mut eight = vec![100.0; 8];
    eight.extend([1.0; 2]);
    assert_eq!(judge_one(eight, vec![1.0; 10]).label, Label::High);
    // kayenta#426: sparse errors against none pass (p 0.07 here).
    assert_eq!(
        judge_one(vec![0.0, 1.0, 2.0, 1.0, 0.0, 0.0], vec![0.0; 6]).label,
        Label::Pass
    );
    // Two points each fail, and shipgate says the level was out of reach.
    let small = judge_one(vec![5.0, 6.0], vec![1.0, 2.0]);
    assert_eq!(small.label, Label::High);
    assert!(small.note.unwrap().contains("cannot reach 98 % confidence"));
}

#[test]
fn kayentas_classifier_suite_labels_hold() {
    use shipgate_policy::judge::kayenta::{Settings, classify_with};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kayenta-classifier-suite.json"
    ))
    .unwrap();
    let suite: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = suite["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 33);
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    for case in cases {
        let title = case["title"].as_str().unwrap();
        let mut effect = serde_json::json!({"measure": case["measure"]});
        if let Some([decrease, increase]) = case["allowed"].as_array().map(Vec::as_slice) {
            effect["allowed_decrease"] = decrease.clone();
            effect["allowed_increase"] = increase.clone();
        }
        if let Some([decrease, increase]) =
            case["critical_thresholds"].as_array().map(Vec::as_slice)
        {
            effect["critical_decrease"] = decrease.clone();
            effect["critical_increase"] = increase.clone();
        }
        let rule: judge::MetricRule = serde_json::from_value(serde_json::json!({
            "name": "m", "direction": case["direction"], "nan_strategy": case["nan_strategy"],
            "critical": case["critical"], "effect_size": effect,
        }))
        .unwrap_or_else(|e| panic!("{title}: {e}"));
        let pair = MetricPair {
            name: "m".into(),
            canary: values(&case["canary"]),
            baseline: values(&case["baseline"]),
        };
        let settings = Settings {
            confidence: case["confidence"].as_f64().unwrap(),
            tolerance: case["tolerance"].as_f64().unwrap(),
        };
        let result = classify_with(&rule, &pair, settings);
        assert_eq!(
            result.label.as_str(),
            case["expect"].as_str().unwrap(),
            "{title}: {result:?}"
        );
        if let Some(critical) = case["expect_critical"].as_bool() {
            assert_eq!(result.critical, critical, "{title}");
        }
        if case["expect_ratio_nan"].as_bool().unwrap() {
            assert!(result.ratio.is_nan(), "{title}: ratio {}", result.ratio);
        }
    }
}
