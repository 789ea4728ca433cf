//! Helpers for Nanny's component, cluster and end-to-end tests, and for the
//! xtask commands that share them.
//!
//! - [`tools`]: the external tools the project builds from Go modules and
//!   caches under `~/.cache/nanny/`, and where to find them.
//! - [`process`]: run a service binary on ephemeral ports and talk to it.
//! - [`http`]: a minimal HTTP/1.1 GET for `/metrics` and probes.
//! - [`stats`]: percentiles for the benchmarks and the eval.
//! - [`cluster`]: the local cluster `cargo xtask cluster up` started, and a
//!   namespace per test.
//! - [`helm`]: how the committed Helm renders show generated certificates.
//! - [`faults`]: inject the failures Nanny heals into that cluster.
//! - [`nodes`]: fake nodes of a test's own, for node actions.
//! - [`owners`]: labelled owners of unlabelled children (CronJob → Job,
//!   StatefulSet → claim).
//! - [`llm`], [`ollama`]: real local LLM servers with a small model.
//! - [`pki`]: the development and test certificates (mutual TLS).
//! - [`requests`]: ready-made contract messages.
//! - [`stack`]: all five services as processes against one cluster.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backfill;
pub mod cluster;
pub mod faults;
pub mod helm;
pub mod http;
pub mod llm;
pub mod nodes;
pub mod ollama;
pub mod owners;
pub mod pki;
pub mod process;
pub mod real_node;
pub mod requests;
pub mod scenarios;
pub mod stack;
pub mod stats;
pub mod tools;
