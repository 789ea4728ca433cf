//! One model scheduler per model endpoint: every question for the model
//! goes through it, from every snapshot, stream and policy.
//!
//! - **Queue:** a bounded priority queue (an incident never answered before
//!   one asked again about changed evidence, then severity, then the
//!   incident's age, then arrival) drained by as many calls at once as the
//!   server has
//!   parallel slots (`llm.parallel`). When it is full, a more urgent
//!   question takes the place of the least urgent one, which ends as
//!   `queue_full`; otherwise the newcomer does.
//! - **Superseding:** a question about an incident replaces a queued one
//!   about the same incident (newer evidence); the replaced one ends as
//!   `superseded`, so the queue holds one question per incident.
//! - **Deduplication:** a question is keyed by its incident, the evidence's
//!   material digest, the model and the prompt (see
//!   [`Prompt::cache_key`]). Asking what is queued or running joins it;
//!   asking what was answered gets the cached answer until the evidence
//!   changes or the TTL passes.
//! - **Timing:** time in the queue is measured apart and never counts
//!   against the model. The breaker hears only of calls that ran: server
//!   errors and timeouts open it; a malformed or cut reply is the model's
//!   fault, not the server's, and leaves it alone. Each call's deadline
//!   comes from the throughput measured so far (prompt tokens at the
//!   prefill rate plus `max_tokens` at the generation rate, doubled, plus
//!   two seconds), within [`MIN_DEADLINE`] and `llm.timeout_secs`; until a
//!   first answer is measured it is `llm.timeout_secs`.

use std::{
    cmp::Ordering,
    collections::{BinaryHeap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use tokio::sync::oneshot;

use super::{Breaker, LlmError, ModelClient, ModelReply, Prompt};

/// The shortest deadline a measured throughput can give.
pub const MIN_DEADLINE: Duration = Duration::from_secs(5);
/// Characters per prompt token, counted low so the estimate errs long.
const CHARS_PER_TOKEN: f64 = 3.0;
/// Weight of the newest measurement in the throughput averages.
const SMOOTHING: f64 = 0.3;
/// Most answers cached; incidents churn slowly.
const CACHE_ENTRIES: usize = 1024;

/// One question: an incident's prompt and how urgent it is.
#[derive(Debug, Clone)]
pub struct Job {
    /// The incident's fingerprint.
    pub incident: String,
    /// Its worst issue severity; higher runs first.
    pub severity: i32,
    /// When its oldest issue was first seen (seconds); older runs first.
    pub first_seen: i64,
    /// The prompt.
    pub prompt: Prompt,
}

/// A model answer and what it cost.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The parsed reply.
    pub reply: ModelReply,
    /// Time this question waited in the queue (zero when cached).
    pub wait: Duration,
    /// Time the call ran (zero when cached).
    pub run: Duration,
    /// From the cache: no call was made for this ask.
    pub cached: bool,
}

/// Why a question got no answer.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The outcome label: `breaker_open`, `queue_full`, or the call's error.
    pub outcome: &'static str,
    /// In words.
    pub error: String,
    /// The assistant message received, if any, for debugging.
    pub raw: String,
    /// Time it waited in the queue.
    pub wait: Duration,
    /// Time the call ran (zero when none was made).
    pub run: Duration,
}

/// What one ask gives.
pub type Answer = Result<Arc<Answered>, Failure>;

/// The scheduler's metrics for one model, their labels applied.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    /// The model's name, the `model` label.
    pub model: String,
    /// Questions queued, not yet running.
    pub queue_depth: IntGauge,
    /// Seconds a question waited before its call started.
    pub wait: Histogram,
    /// Seconds a call ran.
    pub run: Histogram,
    /// Calls and asks by model and outcome (`ok`, `cache_hit`, `joined`,
    /// failures).
    pub calls: IntCounterVec,
    /// Prompt tokens of answered calls.
    pub tokens_in: IntCounter,
    /// Generated tokens of answered calls.
    pub tokens_out: IntCounter,
    /// 1 while the server fails (shared by all models).
    pub degraded: IntGauge,
}

/// Settings of a [`Scheduler`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Calls at once: the server's parallel slots.
    pub parallel: usize,
    /// Most questions queued.
    pub capacity: usize,
    /// The longest deadline of one call, and the one before any is measured.
    pub max_deadline: Duration,
    /// How long an answer is reused while the evidence is unchanged.
    pub cache_ttl: Duration,
    /// Largest reply, tokens (for the deadline).
    pub max_tokens: u32,
}

/// The model's queue, deduplication, cache, breaker and deadlines.
#[derive(Debug, Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: ModelClient,
    breaker: Breaker,
    config: SchedulerConfig,
    metrics: SchedulerMetrics,
    throughput: Mutex<Throughput>,
    cache: Mutex<HashMap<String, (Instant, Arc<Answered>)>>,
    /// Incidents answered at least once (bounded as the cache is): a new
    /// incident's first question goes before a re-ask about another's
    /// changed evidence, so every incident gets an explanation soon.
    answered: Mutex<HashSet<String>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    queue: BinaryHeap<Queued>,
    running: usize,
    waiters: HashMap<String, Vec<oneshot::Sender<Answer>>>,
    arrivals: u64,
}

#[derive(Debug)]
struct Queued {
    key: String,
    job: Job,
    /// Its incident was never answered.
    first: bool,
    arrival: u64,
    since: Instant,
}

impl Queued {
    fn urgency(&self) -> (bool, i32, std::cmp::Reverse<i64>, std::cmp::Reverse<u64>) {
        (
            self.first,
            self.job.severity,
            std::cmp::Reverse(self.job.first_seen),
            std::cmp::Reverse(self.arrival),
        )
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.urgency() == other.urgency()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.urgency().cmp(&other.urgency())
    }
}

/// Tokens per second measured so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Throughput {
    /// Prompt tokens evaluated per second.
    pub prefill: Option<f64>,
    /// Tokens generated per second.
    pub generate: Option<f64>,
}

fn smooth(old: Option<f64>, new: f64) -> Option<f64> {
    if !new.is_finite() || new <= 0.0 {
        return old;
    }
    Some(old.map_or(new, |old| old * (1.0 - SMOOTHING) + new * SMOOTHING))
}

impl Throughput {
    /// Learns from one answered call that ran for `run`.
    pub fn learn(&mut self, reply: &ModelReply, run: Duration) {
        let usage = reply.usage;
        #[expect(
            clippy::cast_precision_loss,
            reason = "token counts are far below 2^52"
        )]
        let (prompt, generated) = (usage.prompt_tokens as f64, usage.completion_tokens as f64);
        match reply.timings {
            Some(t) => {
                self.prefill = smooth(self.prefill, prompt / t.prompt_secs);
                self.generate = smooth(self.generate, generated / t.generate_secs);
            }
            // Without the server's timings the whole run counts for each
            // phase: slower rates, longer deadlines.
            None => {
                let secs = run.as_secs_f64();
                self.prefill = smooth(self.prefill, prompt / secs);
                self.generate = smooth(self.generate, generated / secs);
            }
        }
    }

    /// The deadline for a prompt of `chars` and a reply of up to
    /// `max_tokens`, within [`MIN_DEADLINE`] and `ceiling`.
    pub fn deadline(&self, chars: usize, max_tokens: u32, ceiling: Duration) -> Duration {
        let (Some(prefill), Some(generate)) = (self.prefill, self.generate) else {
            return ceiling;
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "prompt sizes are far below 2^52"
        )]
        let tokens = chars as f64 / CHARS_PER_TOKEN;
        let expected = tokens / prefill + f64::from(max_tokens) / generate;
        Duration::try_from_secs_f64(expected * 2.0 + 2.0)
            .unwrap_or(ceiling)
            .clamp(MIN_DEADLINE.min(ceiling), ceiling)
    }
}

impl Scheduler {
    /// A scheduler for `client`'s model.
    pub fn new(
        client: ModelClient,
        breaker: Breaker,
        config: SchedulerConfig,
        metrics: SchedulerMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                breaker,
                config,
                metrics,
                throughput: Mutex::default(),
                cache: Mutex::default(),
                answered: Mutex::default(),
                state: Mutex::default(),
            }),
        }
    }

    /// The client, for its provider, model and digest.
    pub fn client(&self) -> &ModelClient {
        &self.inner.client
    }

    /// Its metrics.
    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.inner.metrics
    }

    /// The key a question is deduplicated and cached by.
    pub async fn key(&self, prompt: &Prompt) -> String {
        // The digest belongs in the key: learn it before the first key.
        self.inner.client.learn_digest().await;
        prompt.cache_key(&self.inner.client.info())
    }

    /// Asks the model about `job`: from the cache, by joining the same
    /// question queued or running, or by queueing it.
    pub async fn ask(&self, job: Job) -> Answer {
        let key = self.key(&job.prompt).await;
        if let Some(answer) = self.cached(&key) {
            self.inner.count("cache_hit");
            return Ok(answer);
        }
        let (tx, rx) = oneshot::channel();
        if let Err(failure) = self.enqueue(key, job, tx) {
            self.inner.count(failure.outcome);
            return Err(failure);
        }
        self.pump();
        rx.await.unwrap_or_else(|_| {
            Err(failure(
                "dropped",
                "the scheduler dropped the question".to_owned(),
                Duration::ZERO,
            ))
        })
    }

    fn cached(&self, key: &str) -> Option<Arc<Answered>> {
        let ttl = self.inner.config.cache_ttl;
        // A poisoned lock fails closed: no cached answer.
        let cache = self.inner.cache.lock().ok()?;
        let (at, answer) = cache.get(key)?;
        (at.elapsed() < ttl).then(|| {
            Arc::new(Answered {
                wait: Duration::ZERO,
                run: Duration::ZERO,
                cached: true,
                ..Answered::clone(answer)
            })
        })
    }

    fn enqueue(&self, key: String, job: Job, tx: oneshot::Sender<Answer>) -> Result<(), Failure> {
        let Ok(mut state) = self.inner.state.lock() else {
            return Err(failure(
                "dropped",
                "the scheduler's lock is poisoned".to_owned(),
                Duration::ZERO,
            ));
        };
        if let Some(waiting) = state.waiters.get_mut(&key) {
            waiting.push(tx);
            drop(state);
            self.inner.count("joined");
            return Ok(());
        }
        state.arrivals += 1;
        let first = self
            .inner
            .answered
            .lock()
            .is_ok_and(|answered| !answered.contains(&job.incident));
        self.supersede(&mut state, &job.incident);
        tracing::debug!(incident = %job.incident, first, severity = job.severity, queued = state.queue.len(), "Question queued for the model.");
        let queued = Queued {
            key: key.clone(),
            job,
            first,
            arrival: state.arrivals,
            since: Instant::now(),
        };
        if state.queue.len() >= self.inner.config.capacity {
            let mut all = std::mem::take(&mut state.queue).into_vec();
            all.sort();
            // The least urgent leaves: the newcomer, or the one it outranks.
            if all.first().is_none_or(|least| *least > queued) {
                state.queue = all.into();
                return Err(failure(
                    "queue_full",
                    format!(
                        "{} questions are waiting for the model",
                        self.inner.config.capacity
                    ),
                    Duration::ZERO,
                ));
            }
            let evicted = all.remove(0);
            state.queue = all.into();
            for waiter in state.waiters.remove(&evicted.key).unwrap_or_default() {
                let _ = waiter.send(Err(failure(
                    "queue_full",
                    "a more urgent question took its place in the queue".to_owned(),
                    evicted.since.elapsed(),
                )));
            }
            self.inner.count("queue_full");
        }
        state.waiters.insert(key, vec![tx]);
        state.queue.push(queued);
        self.inner
            .metrics
            .queue_depth
            .set(i64::try_from(state.queue.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Drops a queued (not running) question about `incident`: the one
    /// about to be queued has newer evidence. Its askers hear `superseded`
    /// (the newer question answers about the same incident, with evidence
    /// ids of its own), so the queue holds one question per incident and a
    /// fast-changing incident never crowds out the others.
    fn supersede(&self, state: &mut State, incident: &str) {
        let before = state.queue.len();
        let mut stale = Vec::new();
        state.queue.retain(|queued| {
            let keep = queued.job.incident != incident;
            if !keep {
                stale.push((queued.key.clone(), queued.since));
            }
            keep
        });
        if state.queue.len() == before {
            return;
        }
        for (key, since) in stale {
            for waiter in state.waiters.remove(&key).unwrap_or_default() {
                let _ = waiter.send(Err(failure(
                    "superseded",
                    "newer evidence about the same incident took its place in the queue".to_owned(),
                    since.elapsed(),
                )));
            }
            self.inner.count("superseded");
        }
    }

    /// Starts queued calls while slots are free.
    fn pump(&self) {
        loop {
            let next = {
                let Ok(mut state) = self.inner.state.lock() else {
                    return;
                };
                if state.running >= self.inner.config.parallel {
                    return;
                }
                let Some(next) = state.queue.pop() else {
                    return;
                };
                state.running += 1;
                self.inner
                    .metrics
                    .queue_depth
                    .set(i64::try_from(state.queue.len()).unwrap_or(i64::MAX));
                next
            };
            let scheduler = self.clone();
            tokio::spawn(async move {
                let key = next.key.clone();
                let answer = scheduler.inner.run(next).await;
                let waiters = scheduler.inner.state.lock().map(|mut state| {
                    state.running -= 1;
                    state.waiters.remove(&key).unwrap_or_default()
                });
                for waiter in waiters.unwrap_or_default() {
                    let _ = waiter.send(answer.clone());
                }
                scheduler.pump();
            });
        }
    }
}

fn failure(outcome: &'static str, error: String, wait: Duration) -> Failure {
    Failure {
        outcome,
        error,
        raw: String::new(),
        wait,
        run: Duration::ZERO,
    }
}

impl Inner {
    fn count(&self, outcome: &str) {
        self.metrics
            .calls
            .with_label_values(&[self.metrics.model.as_str(), outcome])
            .inc();
    }

    async fn run(&self, queued: Queued) -> Answer {
        let wait = queued.since.elapsed();
        self.metrics.wait.observe(wait.as_secs_f64());
        if !self.breaker.allow(Instant::now()) {
            self.count("breaker_open");
            return Err(failure(
                "breaker_open",
                "the model server failed repeatedly; rules only until the breaker half-opens"
                    .to_owned(),
                wait,
            ));
        }
        let prompt = &queued.job.prompt;
        let deadline = self
            .throughput
            .lock()
            .map(|t| {
                t.deadline(
                    prompt.chars(),
                    self.config.max_tokens,
                    self.config.max_deadline,
                )
            })
            .unwrap_or(self.config.max_deadline);
        let start = Instant::now();
        let mut raw = String::new();
        let reply = self
            .client
            .complete_within(prompt, &mut raw, deadline)
            .await;
        let run = start.elapsed();
        self.metrics.run.observe(run.as_secs_f64());
        match &reply {
            Ok(_) => {
                self.breaker.record(true, Instant::now());
                self.metrics.degraded.set(0);
            }
            Err(error) if error.is_server_failure() => {
                let open = self.breaker.record(false, Instant::now());
                self.metrics.degraded.set(1);
                tracing::warn!(%error, incident = %queued.job.incident, ?deadline, breaker_open = open, "The model call failed.");
            }
            Err(error) => {
                tracing::info!(%error, incident = %queued.job.incident, "The model answered off-schema.");
            }
        }
        match reply {
            Ok(reply) => {
                self.count("ok");
                self.metrics.tokens_in.inc_by(reply.usage.prompt_tokens);
                self.metrics
                    .tokens_out
                    .inc_by(reply.usage.completion_tokens);
                if let Ok(mut throughput) = self.throughput.lock() {
                    throughput.learn(&reply, run);
                }
                let answered = Arc::new(Answered {
                    reply,
                    wait,
                    run,
                    cached: false,
                });
                self.remember(queued.key, &queued.job.incident, answered.clone());
                Ok(answered)
            }
            Err(error) => {
                self.count(error.label());
                Err(Failure {
                    outcome: error.label(),
                    error: error.to_string(),
                    raw,
                    wait,
                    run,
                })
            }
        }
    }

    fn remember(&self, key: String, incident: &str, answer: Arc<Answered>) {
        if let Ok(mut answered) = self.answered.lock() {
            if answered.len() >= CACHE_ENTRIES {
                answered.clear();
            }
            answered.insert(incident.to_owned());
        }
        let ttl = self.config.cache_ttl;
        if ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), answer));
    }
}

impl LlmError {
    /// Whether this failure says the server is down or overloaded (the
    /// breaker counts it), rather than that the model answered badly.
    pub fn is_server_failure(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::Timeout | Self::Status(_))
    }
}
