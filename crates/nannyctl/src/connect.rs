//! The kubectl-like flags every cluster command shares, and the client they
//! produce.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--kubeconfig`, `--context`, `-n/--namespace`, `-A/--all-namespaces`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`, then
    /// the in-cluster ServiceAccount).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else `default`).
    /// `snapshot` takes it repeatedly as the snapshot's scope.
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Vec<String>,
    /// Every namespace (`list`, `policy list`).
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

/// Which namespaces a command addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// One namespace.
    One(String),
    /// All namespaces (`-A`).
    All,
}

/// A connected client and what the kubeconfig says about the user.
#[allow(missing_debug_implementations)] // kube::Client has no Debug
pub struct Connection {
    /// The API client.
    pub client: kube::Client,
    /// The addressed namespace(s).
    pub namespaces: Namespaces,
    /// The kubeconfig user name of the selected context, when there is one.
    pub user: Option<String>,
}

impl Connection {
    /// The one namespace a single-object command works in.
    ///
    /// # Errors
    /// When `-A` was given.
    pub fn namespace(&self) -> anyhow::Result<&str> {
        match &self.namespaces {
            Namespaces::One(namespace) => Ok(namespace),
            Namespaces::All => bail!("this command works on one object: use -n NAMESPACE, not -A"),
        }
    }
}

impl KubeArgs {
    /// Connects as the kubeconfig says.
    ///
    /// # Errors
    /// When no usable kubeconfig or in-cluster config is found, or more than
    /// one `-n` was given.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        if self.namespace.len() > 1 {
            bail!(
                "only `snapshot` takes several namespaces; give one -n NAMESPACE (or -A where allowed)"
            );
        }
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Some(
                Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?,
            ),
            // No file at all is fine: we may run in a pod.
            None => Kubeconfig::read().ok(),
        };
        let (config, user) = match kubeconfig {
            Some(kubeconfig) => {
                let user = context_user(&kubeconfig, self.context.as_deref());
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .context("loading the kubeconfig")?;
                (config, user)
            }
            None if self.context.is_some() => {
                bail!("--context given but no kubeconfig found ($KUBECONFIG, ~/.kube/config)")
            }
            None => (
                kube::Config::incluster().context(
                    "no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not in a pod",
                )?,
                None,
            ),
        };
        let namespaces = if self.all_namespaces {
            Namespaces::All
        } else {
            Namespaces::One(
                self.namespace
                    .first()
                    .cloned()
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
        let client = kube::Client::try_from(config).context("building the API client")?;
        Ok(Connection {
            client,
            namespaces,
            user,
        })
    }
}

/// The user name the selected (or current) context authenticates as.
fn context_user(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let name = context.or(kubeconfig.current_context.as_deref())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)?
        .context
        .as_ref()?
        .user
        .clone()
        .filter(|user| !user.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c
  cluster: {server: 'https://127.0.0.1:6443'}
users:
- name: alice
  user: {token: t}
- name: bob
  user: {token: u}
contexts:
- name: dev
  context: {cluster: c, user: alice, namespace: shop}
- name: ops
  context: {cluster: c, user: bob}
";

    fn kubeconfig() -> Kubeconfig {
        Kubeconfig::from_yaml(KUBECONFIG).unwrap()
    }

    #[test]
    fn user_comes_from_the_selected_context() {
        assert_eq!(context_user(&kubeconfig(), None).as_deref(), Some("alice"));
        assert_eq!(
            context_user(&kubeconfig(), Some("ops")).as_deref(),
            Some("bob")
        );
        assert_eq!(context_user(&kubeconfig(), Some("nope")), None);
    }

    #[tokio::test]
    async fn namespace_defaults_to_the_contexts_then_default() {
        let dir = std::env::temp_dir().join(format!("nannyctl-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(&path, KUBECONFIG).unwrap();
        let args = |context: Option<&str>, namespace: &[&str]| KubeArgs {
            kubeconfig: Some(path.clone()),
            context: context.map(str::to_owned),
            namespace: namespace.iter().map(|n| (*n).to_owned()).collect(),
            all_namespaces: false,
        };
        let dev = args(None, &[]).connect().await.unwrap();
        assert_eq!(dev.namespaces, Namespaces::One("shop".into()));
        assert_eq!(dev.user.as_deref(), Some("alice"));
        let ops = args(Some("ops"), &[]).connect().await.unwrap();
        assert_eq!(ops.namespaces, Namespaces::One("default".into()));
        let explicit = args(Some("ops"), &["pay"]).connect().await.unwrap();
        assert_eq!(explicit.namespace().unwrap(), "pay");
        let two = args(None, &["a", "b"]).connect().await.err().unwrap();
        assert!(two.to_string().contains("one -n"), "{two}");
        let missing = KubeArgs {
            kubeconfig: Some(dir.join("missing")),
            ..KubeArgs::default()
        };
        let error = missing.connect().await.err().unwrap();
        assert!(format!("{error:#}").contains("missing"), "{error:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
