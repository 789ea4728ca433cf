//! `nannyctl audit verify FILE`: check the safety gate's audit log: its hash
//! chain, every record's signature, and (with anchors) that its tail was
//! neither cut nor rewritten.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, anyhow};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt as _, api::ListParams};
use nanny_common::audit::Anchor;
use nanny_crd::HealingAction;

use crate::connect::KubeArgs;

/// `nannyctl audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify that no record was changed, removed, reordered or cut off.
    Verify(VerifyArgs),
}

/// `nannyctl audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The gate's audit log (its `audit.path`).
    file: PathBuf,
    /// The gate's public verdict key: a `PUBLIC KEY` or certificate PEM
    /// (`cargo xtask certs` writes verdict-signing.pem; the chart keeps it
    /// in the `<release>-verdict-signing` ConfigMap as gate.pem). Repeat it
    /// for the keys before a rotation. Default:
    /// `~/.config/nanny/verdict-signing.pem`.
    #[arg(long = "public-key", value_name = "PEM")]
    public_keys: Vec<PathBuf>,
    /// A record the log must still hold, as `SEQ:HASH` (repeatable).
    #[arg(long, value_name = "SEQ:HASH")]
    anchor: Vec<String>,
    /// Check the log against the anchor every HealingAction keeps of its
    /// verdict (every namespace, or those given with `-n`): a cut tail or a
    /// rewrite shows.
    #[arg(long)]
    anchors_from_cluster: bool,
    /// Check the log against the head the gate keeps in this ConfigMap
    /// (`audit.anchor_configmap`, `NAMESPACE/NAME`): a tail cut after the
    /// last action's anchor shows too.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    anchor_configmap: Option<String>,
}

/// Runs the subcommand; a broken, unsigned or truncated log exits 1 naming
/// the first bad record.
pub async fn run(kube: KubeArgs, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Verify(args) = command;
    let keys = if args.public_keys.is_empty() {
        let default = crate::tls::defaults_dir()
            .map(|dir| dir.join("verdict-signing.pem"))
            .filter(|path| path.is_file())
            .ok_or_else(|| {
                anyhow!("give --public-key: the gate's verdict-signing.pem (or the chart's <release>-verdict-signing ConfigMap, gate.pem)")
            })?;
        vec![default]
    } else {
        args.public_keys.clone()
    };
    let verifier = nanny_common::verdict::Verifier::load("--public-key", &keys)?;
    let mut anchors = args
        .anchor
        .iter()
        .map(|text| parse_anchor(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.anchors_from_cluster {
        anchors.extend(cluster_anchors(&kube).await?);
    }
    if let Some(configmap) = &args.anchor_configmap {
        anchors.push(configmap_anchor(&kube, configmap).await?);
    }
    match nanny_common::audit::verify(&args.file, &verifier, &anchors) {
        Ok(report) => {
            println!(
                "{}: {} records, chain intact and signed by {} (last hash {}); {} anchors hold",
                args.file.display(),
                report.records,
                verifier.key_ids().join(", "),
                report.head,
                report.anchors
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("nannyctl: TAMPERED OR DAMAGED: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn parse_anchor(text: &str) -> anyhow::Result<Anchor> {
    let (seq, hash) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--anchor {text:?}: expected SEQ:HASH"))?;
    Ok(Anchor {
        seq: seq
            .parse()
            .with_context(|| format!("--anchor {text:?}: SEQ is not a number"))?,
        hash: hash.to_owned(),
        source: format!("--anchor {seq}"),
    })
}

/// The head the gate keeps in ConfigMap `namespace/name`.
async fn configmap_anchor(kube: &KubeArgs, configmap: &str) -> anyhow::Result<Anchor> {
    let (namespace, name) = configmap
        .split_once('/')
        .ok_or_else(|| anyhow!("--anchor-configmap {configmap:?}: expected NAMESPACE/NAME"))?;
    let client = kube.connect().await?.client;
    let data = Api::<ConfigMap>::namespaced(client, namespace)
        .get(name)
        .await
        .with_context(|| format!("reading the audit anchor ConfigMap {configmap}"))?
        .data
        .unwrap_or_default();
    let field = |key: &str| {
        data.get(key).ok_or_else(|| {
            anyhow!("ConfigMap {configmap} holds no {key:?}: the gate has not anchored yet")
        })
    };
    Ok(Anchor {
        seq: field("seq")?
            .parse()
            .with_context(|| format!("ConfigMap {configmap}: seq is not a number"))?,
        hash: field("hash")?.clone(),
        source: format!("ConfigMap {configmap}"),
    })
}

/// The anchors of the HealingActions' verdicts: in the namespaces `-n`
/// names, else in all.
async fn cluster_anchors(kube: &KubeArgs) -> anyhow::Result<Vec<Anchor>> {
    let client = kube.connect().await?.client;
    let apis: Vec<Api<HealingAction>> = if kube.namespace.is_empty() {
        vec![Api::all(client)]
    } else {
        kube.namespace
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    let mut items = Vec::new();
    for api in apis {
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing HealingActions for their audit anchors")?;
        items.extend(list.items);
    }
    Ok(items
        .iter()
        .filter_map(|action| {
            let verdict = action.status.as_ref()?.verdict.as_ref()?;
            Some(Anchor {
                seq: verdict.audit_seq?,
                hash: verdict.audit_hash.clone(),
                source: format!(
                    "HealingAction {}/{}",
                    action.namespace().unwrap_or_default(),
                    action.name_any()
                ),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse_or_name_what_is_wrong() {
        let anchor = parse_anchor("12:abc").unwrap();
        assert_eq!((anchor.seq, anchor.hash.as_str()), (12, "abc"));
        assert!(
            parse_anchor("abc")
                .unwrap_err()
                .to_string()
                .contains("SEQ:HASH")
        );
        assert!(
            parse_anchor("x:abc")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
    }
}
