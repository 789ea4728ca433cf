//! The cluster half of `cargo xtask bench pipeline` (ignored in the test
//! run; performance is measured, not asserted): the time from a fault being
//! visible in the API to the action executed, rules path, Auto mode, over
//! `NANNY_BENCH_FAULTS` crash loops (target: p95 ≤ 5 s). With
//! `NANNY_BENCH_LLM=1` the analyzer also asks the real local model
//! (llama.cpp, SmolLM2-135M) about every incident: the rules' action must
//! not wait for it (issue #19: within 1 s of the figure without).
//!
//! "Visible" is the moment the API shows the pod past the crash-loop rule's
//! restart threshold; "executed" is the moment the API shows the pod
//! deleted. Both are observed by polling every 50 ms, so each figure may be
//! up to 50 ms late on either side.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nanny_cluster_tests::pipeline::{Harness, crash_loop_restarted};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run with cargo xtask bench pipeline"]
async fn fault_to_action_latency() {
    let faults: usize = std::env::var("NANNY_BENCH_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let with_model = std::env::var("NANNY_BENCH_LLM").is_ok_and(|v| v == "1");
    let model = if with_model {
        let Some(server) = nanny_test_util::llm::LlamaServer::for_test("bench pipeline").await
        else {
            return;
        };
        Some(server)
    } else {
        None
    };
    let env = model.as_ref().map_or_else(Vec::new, |server| {
        [
            ("NANNY_LLM__ENABLED", "true"),
            ("NANNY_LLM__PROVIDER", "openai"),
            ("NANNY_LLM__ENDPOINT", server.url.as_str()),
            ("NANNY_LLM__MODEL", "smollm2:135m"),
        ]
        .into_iter()
        .map(|(k, v)| ("nanny-analyzer", k.to_owned(), v.to_owned()))
        .collect()
    });
    let Some(h) = Harness::start_with("pipeline-bench", "Auto", env).await else {
        return;
    };
    let mut samples: Vec<Duration> = Vec::with_capacity(faults);
    for i in 0..faults {
        let latency = crash_loop_restarted(&h, &format!("bench-{i}")).await;
        println!("fault {:>3}: {latency:>8.1?}", i + 1);
        samples.push(latency);
    }
    if with_model {
        let analyzer = h.stack.get("nanny-analyzer").http_addr;
        let (_, metrics) = nanny_test_util::http::get(analyzer, "/metrics")
            .await
            .unwrap();
        let calls: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("nanny_analyzer_model_calls_total{"))
            .collect();
        println!("the model meanwhile: {calls:?}");
    }
    samples.sort();
    let at = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index]
    };
    println!(
        "{}: fault visible → action executed over {} crash loops: p50 {:.0?}, p95 {:.0?}, max {:.0?} (target p95 ≤ 5 s: {})",
        if with_model {
            "rules with the model asked too"
        } else {
            "rules alone"
        },
        samples.len(),
        at(0.5),
        at(0.95),
        at(1.0),
        if at(0.95) <= Duration::from_secs(5) {
            "met"
        } else {
            "NOT met"
        }
    );
}
