//! The scheduler against a stand-in model server that records the order of
//! the calls it gets and answers each after a delay.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use serde_json::json;
use tokio::net::TcpListener;

use super::tests::{GOOD, client, completion, read_request, respond};
use super::*;

/// A stand-in server: every chat call is logged by the incident named in
/// its prompt, then answered with `status` and `body` after `delay`.
struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(status: &'static str, body: String, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let calls = log.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (calls, body) = (calls.clone(), body.clone());
                tokio::spawn(async move {
                    let (_, request) = read_request(&mut socket).await;
                    let incident = request
                        .split("incident ")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .unwrap_or_default()
                        .to_owned();
                    calls.lock().unwrap().push(incident);
                    tokio::time::sleep(delay).await;
                    respond(&mut socket, status, &body).await;
                });
            }
        });
        Self { addr, log }
    }

    fn calls(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `n` calls have come in.
    async fn wait_for(&self, n: usize) {
        for _ in 0..500 {
            if self.calls().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} calls never came: {:?}", self.calls());
    }
}

fn metrics() -> SchedulerMetrics {
    let histogram = |name: &str| Histogram::with_opts(HistogramOpts::new(name, "test")).unwrap();
    SchedulerMetrics {
        model: "smollm2".into(),
        queue_depth: IntGauge::new("depth", "test").unwrap(),
        wait: histogram("wait"),
        run: histogram("run"),
        calls: IntCounterVec::new(Opts::new("calls", "test"), &["model", "outcome"]).unwrap(),
        tokens_in: IntCounter::new("in", "test").unwrap(),
        tokens_out: IntCounter::new("out", "test").unwrap(),
        degraded: IntGauge::new("degraded", "test").unwrap(),
    }
}

fn new_scheduler(
    addr: SocketAddr,
    parallel: usize,
    capacity: usize,
    deadline: Duration,
) -> Scheduler {
    Scheduler::new(
        client(addr, deadline),
        Breaker::new(2, Duration::from_secs(60)),
        SchedulerConfig {
            parallel,
            capacity,
            max_deadline: deadline,
            cache_ttl: Duration::from_secs(60),
            max_tokens: 256,
        },
        metrics(),
    )
}

fn job(incident: &str, severity: i32, material: &str) -> Job {
    Job {
        incident: incident.into(),
        severity,
        first_seen: 0,
        prompt: Prompt {
            system: "system".into(),
            user: format!("incident {incident}"),
            schema: json!({}),
            fingerprints: Vec::new(),
            incident: incident.into(),
            material: material.into(),
        },
    }
}

fn count(scheduler: &Scheduler, outcome: &str) -> u64 {
    scheduler
        .metrics()
        .calls
        .with_label_values(&["smollm2", outcome])
        .get()
}

/// Asks `job` in a task of its own: the question waits while the test goes on.
fn ask_later(scheduler: &Scheduler, job: Job) -> tokio::task::JoinHandle<Answer> {
    let scheduler = scheduler.clone();
    tokio::spawn(async move { scheduler.ask(job).await })
}

/// Waits until `depth` questions wait in the queue.
async fn wait_queued(scheduler: &Scheduler, depth: i64) {
    while scheduler.metrics().queue_depth.get() < depth {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn ask_all(scheduler: &Scheduler, jobs: Vec<Job>) -> Vec<Answer> {
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| ask_later(scheduler, job))
        .collect();
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn one_call_per_question_most_urgent_first_and_waiting_is_no_timeout() {
    // Each call takes 400 ms and may run 1 s: the last question waits
    // longer than that in the queue and must still be answered.
    let server = Server::start(
        "200 OK",
        completion(GOOD, "stop"),
        Duration::from_millis(400),
    )
    .await;
    let scheduler = new_scheduler(server.addr, 1, 16, Duration::from_secs(1));
    let first = ask_later(&scheduler, job("first", 1, "m"));
    server.wait_for(1).await;
    let answers = ask_all(
        &scheduler,
        vec![
            job("low", 1, "m"),
            job("high", 3, "m"),
            job("mid", 2, "m"),
            job("high", 3, "m"),
            job("first", 1, "m"),
        ],
    )
    .await;
    assert!(first.await.unwrap().is_ok());
    for answer in &answers {
        let answered = answer.as_ref().expect("every question answered");
        assert!(!answered.cached);
    }
    assert_eq!(server.calls(), ["first", "high", "mid", "low"]);
    assert_eq!(count(&scheduler, "ok"), 4);
    assert_eq!(count(&scheduler, "joined"), 2);
    let waited = answers[0].as_ref().unwrap().wait;
    assert!(
        waited > Duration::from_secs(1),
        "low waited {waited:?}, past one call's deadline"
    );
    assert_eq!(count(&scheduler, "timeout"), 0);

    // Asked again with the same evidence: the cache answers, no call.
    let again = scheduler.ask(job("mid", 2, "m")).await.unwrap();
    assert!(again.cached);
    assert_eq!(server.calls().len(), 4);
    // Changed evidence: asked anew.
    assert!(!scheduler.ask(job("mid", 2, "m2")).await.unwrap().cached);
    assert_eq!(server.calls().len(), 5);
}

#[tokio::test]
async fn a_new_incident_goes_before_a_reask_about_changed_evidence() {
    let server = Server::start(
        "200 OK",
        completion(GOOD, "stop"),
        Duration::from_millis(200),
    )
    .await;
    let scheduler = new_scheduler(server.addr, 1, 16, Duration::from_secs(5));
    // "old" is answered once; then, while a call runs, its changed
    // evidence (more severe, older) and a new incident queue up.
    assert!(scheduler.ask(job("old", 3, "m1")).await.is_ok());
    let running = ask_later(&scheduler, job("busy", 1, "m"));
    server.wait_for(2).await;
    let answers = ask_all(&scheduler, vec![job("old", 3, "m2"), job("new", 1, "m")]).await;
    assert!(running.await.unwrap().is_ok());
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(server.calls(), ["old", "busy", "new", "old"]);
}

#[tokio::test]
async fn newer_evidence_replaces_a_queued_question_about_the_same_incident() {
    let server = Server::start(
        "200 OK",
        completion(GOOD, "stop"),
        Duration::from_millis(300),
    )
    .await;
    let scheduler = new_scheduler(server.addr, 1, 16, Duration::from_secs(5));
    let running = ask_later(&scheduler, job("busy", 1, "m"));
    server.wait_for(1).await;
    let older = ask_later(&scheduler, job("web", 2, "restarts 2^1"));
    wait_queued(&scheduler, 1).await;
    let newer = scheduler.ask(job("web", 2, "restarts 2^2")).await;
    assert!(newer.is_ok());
    assert_eq!(older.await.unwrap().unwrap_err().outcome, "superseded");
    assert!(running.await.unwrap().is_ok());
    // One call about web, with the newer evidence.
    assert_eq!(server.calls(), ["busy", "web"]);
    assert_eq!(count(&scheduler, "superseded"), 1);
}

#[tokio::test]
async fn a_full_queue_keeps_the_most_urgent_questions() {
    let server = Server::start(
        "200 OK",
        completion(GOOD, "stop"),
        Duration::from_millis(300),
    )
    .await;
    let scheduler = new_scheduler(server.addr, 1, 1, Duration::from_secs(5));
    let running = ask_later(&scheduler, job("running", 1, "m"));
    server.wait_for(1).await;
    let queued = ask_later(&scheduler, job("queued", 1, "m"));
    wait_queued(&scheduler, 1).await;
    // More urgent: takes the queued one's place.
    let urgent = ask_later(&scheduler, job("urgent", 3, "m"));
    let evicted = queued.await.unwrap().unwrap_err();
    assert_eq!(evicted.outcome, "queue_full");
    // Less urgent than what waits: refused at once.
    let refused = scheduler.ask(job("late", 1, "m")).await.unwrap_err();
    assert_eq!(refused.outcome, "queue_full");
    assert!(running.await.unwrap().is_ok());
    assert!(urgent.await.unwrap().is_ok());
    assert_eq!(server.calls(), ["running", "urgent"]);
    assert_eq!(count(&scheduler, "queue_full"), 2);
}

#[tokio::test]
async fn bad_replies_leave_the_breaker_closed_server_errors_open_it() {
    // The model answers off-schema every time: its fault, not the
    // server's; every question is still put to it.
    let server = Server::start("200 OK", completion("not json", "stop"), Duration::ZERO).await;
    let scheduler = new_scheduler(server.addr, 1, 16, Duration::from_secs(5));
    for n in 0..4 {
        let failure = scheduler
            .ask(job(&format!("q{n}"), 1, "m"))
            .await
            .unwrap_err();
        assert_eq!(failure.outcome, "malformed");
    }
    assert_eq!(server.calls().len(), 4);
    assert_eq!(count(&scheduler, "breaker_open"), 0);

    // A failing server opens the breaker after two calls (each retried
    // twice within its deadline); the third question makes no call.
    let server = Server::start("500 Internal Server Error", "{}".into(), Duration::ZERO).await;
    let scheduler = new_scheduler(server.addr, 1, 16, Duration::from_secs(5));
    for n in 0..2 {
        let failure = scheduler
            .ask(job(&format!("q{n}"), 1, "m"))
            .await
            .unwrap_err();
        assert_eq!(failure.outcome, "status");
    }
    let calls = server.calls().len();
    let failure = scheduler.ask(job("q2", 1, "m")).await.unwrap_err();
    assert_eq!(failure.outcome, "breaker_open");
    assert_eq!(server.calls().len(), calls, "no call while open");
    assert_eq!(scheduler.metrics().degraded.get(), 1);
}

#[test]
fn deadlines_follow_the_measured_throughput() {
    let ceiling = Duration::from_secs(30);
    let mut throughput = Throughput::default();
    assert_eq!(
        throughput.deadline(3000, 256, ceiling),
        ceiling,
        "nothing measured yet"
    );
    let mut reply = parse_reply(GOOD).unwrap();
    reply.usage = Usage {
        prompt_tokens: 700,
        completion_tokens: 30,
    };
    reply.timings = Some(Timings {
        prompt_secs: 1.0,
        generate_secs: 0.5,
    });
    throughput.learn(&reply, Duration::from_secs(2));
    assert_eq!(throughput.prefill, Some(700.0));
    assert_eq!(throughput.generate, Some(60.0));
    // 1000 prompt tokens at 700/s and 256 at 60/s, doubled, plus 2 s.
    let deadline = throughput.deadline(3000, 256, ceiling);
    assert!(
        (deadline.as_secs_f64() - 13.39).abs() < 0.01,
        "{deadline:?}"
    );
    // Never under the floor, never over the ceiling.
    assert_eq!(throughput.deadline(3, 1, ceiling), MIN_DEADLINE);
    assert_eq!(throughput.deadline(3_000_000, 256, ceiling), ceiling);
    // Without the server's timings, the whole run counts for each phase.
    let mut rough = Throughput::default();
    reply.timings = None;
    rough.learn(&reply, Duration::from_secs(2));
    assert_eq!(rough.prefill, Some(350.0));
    assert_eq!(rough.generate, Some(15.0));
}
