//! Kubernetes client configuration shared by the services that talk to the
//! API server.

use crate::Error;

/// The annotation a cordon by Nanny leaves on the node (the action's id):
/// the remediator writes it, the collector reports it, and only such a
/// cordon may Nanny lift.
pub const CORDONED_BY: &str = "nanny.ai/cordoned-by";

/// Loads the client config from `kubeconfig`, or — when empty — the
/// in-cluster ServiceAccount, then `$KUBECONFIG`, then `~/.kube/config`.
/// `key` names the config key in error messages.
///
/// # Errors
/// [`Error::Config`] naming `key` when the file cannot be read or used.
pub async fn load_config(key: &str, kubeconfig: &str) -> Result<kube::Config, Error> {
    if kubeconfig.is_empty() {
        return kube::Config::infer()
            .await
            .map_err(|e| Error::config(key, e.to_string()));
    }
    let error = |e: &dyn std::fmt::Display| Error::config(key, format!("{kubeconfig}: {e}"));
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| error(&e))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| error(&e))
}
