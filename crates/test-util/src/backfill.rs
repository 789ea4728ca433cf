//! A real Prometheus holding series of known history: written as
//! OpenMetrics, turned into TSDB blocks by `promtool tsdb
//! create-blocks-from openmetrics` (Prometheus' own backfilling), and
//! served by a Prometheus started on them. Trends over hours are tested in
//! seconds, through the same HTTP API and PromQL a cluster's Prometheus
//! answers.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;

use crate::cluster::eventually;

/// One series: its metric name, labels and samples (seconds since the
/// epoch, value), oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    /// Metric name, e.g. `container_memory_working_set_bytes`.
    pub name: &'static str,
    /// Labels, e.g. `[("namespace", "shop"), ("pod", "web-1")]`.
    pub labels: Vec<(&'static str, String)>,
    /// Samples.
    pub samples: Vec<(i64, f64)>,
}

/// `minutes + 1` samples a minute apart ending at `end`, the value at
/// minute `m` (0 the oldest) given by `value(m)`; `None` leaves a gap.
pub fn minutes(
    end: i64,
    minutes: i64,
    mut value: impl FnMut(i64) -> Option<f64>,
) -> Vec<(i64, f64)> {
    (0..=minutes)
        .filter_map(|m| Some((end - (minutes - m) * 60, value(m)?)))
        .collect()
}

/// The series as OpenMetrics text: one family per metric name (samples of
/// a family together, each series' samples in time order), `# EOF` last.
pub fn openmetrics(series: &[Series]) -> String {
    let mut out = String::new();
    let mut names: Vec<&str> = series.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in series.iter().filter(|s| s.name == name) {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            for (at, value) in &s.samples {
                let _ = writeln!(out, "{name}{labels} {value} {at}");
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A Prometheus serving only the backfilled series. Killed on drop; its
/// directory is removed.
#[derive(Debug)]
pub struct Backfilled {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Drop for Backfilled {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn binary(name: &str) -> PathBuf {
    // `cargo xtask cluster up` installs Debian's prometheus package, which
    // ships promtool beside prometheus.
    PathBuf::from("/usr/bin").join(name)
}

async fn run(binary: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {}: {}\n{}",
        binary.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Backfills `series` into a fresh TSDB under `dir` and starts Prometheus on
/// it, ready to answer.
///
/// # Errors
/// When promtool refuses the series or Prometheus does not become ready.
pub async fn start(dir: &Path, series: &[Series]) -> anyhow::Result<Backfilled> {
    let _ = std::fs::remove_dir_all(dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let input = dir.join("series.om");
    std::fs::write(&input, openmetrics(series))?;
    let (input_arg, data_arg) = (input.display().to_string(), data.display().to_string());
    run(
        &binary("promtool"),
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            &input_arg,
            &data_arg,
        ],
    )
    .await?;
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = tokio::process::Command::new(binary("prometheus"))
        .args([
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={data_arg}"),
            format!("--web.listen-address={addr}"),
            "--storage.tsdb.retention.time=30d".to_owned(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting prometheus")?;
    let backfilled = Backfilled {
        url: format!("http://{addr}"),
        child,
        dir: dir.to_owned(),
    };
    eventually(
        "the backfilled Prometheus ready",
        Duration::from_secs(60),
        || async {
            let (status, _) = crate::http::get(addr, "/-/ready").await?;
            Ok((status == 200).then_some(()))
        },
    )
    .await?;
    Ok(backfilled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_groups_families_and_escapes_labels() {
        let text = openmetrics(&[
            Series {
                name: "b",
                labels: vec![("pod", "p\"1".to_owned())],
                samples: vec![(10, 1.0), (70, 2.5)],
            },
            Series {
                name: "a",
                labels: vec![],
                samples: vec![(10, 3.0)],
            },
        ]);
        assert_eq!(
            text,
            "# TYPE a gauge\na 3 10\n# TYPE b gauge\nb{pod=\"p\\\"1\"} 1 10\nb{pod=\"p\\\"1\"} 2.5 70\n# EOF\n"
        );
        assert_eq!(
            minutes(600, 2, |m| (m != 1).then_some(1.0)),
            [(480, 1.0), (600, 1.0)]
        );
    }
}
