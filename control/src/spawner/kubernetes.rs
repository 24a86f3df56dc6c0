//! The `kubernetes` spawner: grows and shrinks a relay StatefulSet through its `scale`
//! subresource. Pods register themselves by heartbeat, with their pod name as relay id
//! (`<statefulset>-<ordinal>`; see `deploy/relay-statefulset.yaml`).
//!
//! Requests, exactly (the tests assert them against a fake API server):
//! - spawn: `GET /apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale`, then
//!   `PATCH` the same path with `Content-Type: application/merge-patch+json` and body
//!   `{"spec":{"replicas":N+1}}`; the new relay is `{name}-{N}`.
//! - stop: a StatefulSet only removes its highest ordinals, so stopping `{name}-{k}` marks it
//!   retired and, while the highest ordinal is retired, the replica count is lowered (one
//!   `GET` and one `PATCH` to the lowest count that removes only retired pods). A retired pod
//!   below a live one stays (drained) until the ones above it go.
//! - supervise: nothing; the StatefulSet controller restarts crashed pods.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use parking_lot::Mutex;

use super::{BoxFuture, SpawnError, Spawner};

/// Scales one StatefulSet.
pub struct KubernetesSpawner {
    api: Api<StatefulSet>,
    name: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordinals this spawner added and has not removed.
    spawned: BTreeSet<u32>,
    /// Ordinals stopped but still below a live ordinal.
    retired: BTreeSet<u32>,
}

impl std::fmt::Debug for KubernetesSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSpawner")
            .field("statefulset", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubernetesSpawner {
    /// A spawner using the in-cluster (or kubeconfig) credentials.
    pub async fn in_cluster(namespace: &str, statefulset: &str) -> Result<Self, SpawnError> {
        let client = Client::try_default().await.map_err(backend)?;
        Ok(Self::new(client, namespace, statefulset))
    }

    /// A spawner over an existing client (tests point one at a fake API server).
    pub fn new(client: Client, namespace: &str, statefulset: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: statefulset.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    async fn replicas(&self) -> Result<u32, SpawnError> {
        let scale = self.api.get_scale(&self.name).await.map_err(backend)?;
        let n = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        u32::try_from(n).map_err(|_| SpawnError::Backend(format!("negative replica count {n}")))
    }

    async fn set_replicas(&self, n: u32) -> Result<(), SpawnError> {
        let patch = serde_json::json!({ "spec": { "replicas": n } });
        self.api
            .patch_scale(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(backend)?;
        tracing::info!(statefulset = %self.name, replicas = n, "scaled relay StatefulSet");
        Ok(())
    }

    fn ordinal(&self, relay_id: &str) -> Option<u32> {
        relay_id.strip_prefix(&self.name)?.strip_prefix('-')?.parse().ok()
    }
}

impl Spawner for KubernetesSpawner {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn spawn(&self) -> BoxFuture<'_, Result<String, SpawnError>> {
        Box::pin(async move {
            let n = self.replicas().await?;
            self.set_replicas(n.saturating_add(1)).await?;
            self.state.lock().spawned.insert(n);
            Ok(format!("{}-{n}", self.name))
        })
    }

    fn stop(&self, relay_id: String) -> BoxFuture<'_, Result<(), SpawnError>> {
        Box::pin(async move {
            let k = self
                .ordinal(&relay_id)
                .ok_or_else(|| SpawnError::Unknown(relay_id.clone()))?;
            {
                let mut state = self.state.lock();
                if !state.spawned.contains(&k) {
                    return Err(SpawnError::Unknown(relay_id));
                }
                state.retired.insert(k);
            }
            let n = self.replicas().await?;
            let mut target = n;
            {
                let state = self.state.lock();
                while target > 0 && state.retired.contains(&(target - 1)) {
                    target -= 1;
                }
            }
            if target < n {
                self.set_replicas(target).await?;
            }
            let mut state = self.state.lock();
            state.retired.retain(|o| *o < target);
            state.spawned.retain(|o| *o < target);
            Ok(())
        })
    }

    fn supervise(&self) -> BoxFuture<'_, Result<(), SpawnError>> {
        Box::pin(async { Ok(()) })
    }

    fn running(&self) -> Vec<String> {
        let state = self.state.lock();
        state
            .spawned
            .iter()
            .map(|o| format!("{}-{o}", self.name))
            .collect()
    }
}

fn backend(e: kube::Error) -> SpawnError {
    SpawnError::Backend(e.to_string())
}
