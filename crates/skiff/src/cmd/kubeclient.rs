//! A kube client from a kubeconfig file, shared by the components that talk
//! to the API server as clients (`sim`, `scheduler`).

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub async fn from_kubeconfig(path: Option<&Path>) -> Result<kube::Client> {
    let env = std::env::var_os("KUBECONFIG").map(std::path::PathBuf::from);
    let path = path.or(env.as_deref()).context("no --kubeconfig and no $KUBECONFIG")?;
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.context("kubeconfig")?;
    // Long-running watches: no overall read timeout (kube's default would cut them).
    config.read_timeout = None;
    kube::Client::try_from(config).context("building the API client")
}
