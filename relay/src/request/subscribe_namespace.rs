//! SUBSCRIBE_NAMESPACE: announce the namespaces published here and (through the first
//! reachable parent) higher up the tree, each once, and withdraw them as they go.

use std::collections::HashMap;
use std::sync::Arc;

use banyan_moq::coding::TrackNamespace;
use banyan_moq::message::{HopPath, Parameters};
use banyan_moq::session::{NamespaceAnnouncer, NamespaceEvent, SubscribeNamespaceRequest};

use super::SessionHandler;

impl SessionHandler {
    pub(super) async fn subscribe_namespace(
        self: Arc<Self>,
        request: SubscribeNamespaceRequest,
        path: HopPath,
    ) -> Result<(), banyan_moq::session::Error> {
        let prefix = request.message.track_namespace_prefix.clone();
        let _slot = match self.namespace_slot() {
            Ok(slot) => slot,
            Err((code, reason)) => return request.reject(code, reason).await,
        };
        let mut watch = self.shared.namespaces.watch(prefix.clone());
        // Namespaces published higher up the tree, as the first reachable parent sees them.
        let mut upstream = match self.shared.tracks.parents() {
            Some(parents) => {
                let message = request.message.clone();
                let result = parents
                    .request(&prefix, &path, |session, hop_path| {
                        let mut message = message.clone();
                        message.parameters = Parameters {
                            hop_path,
                            ..Default::default()
                        };
                        async move { session.subscribe_namespace(message).await }
                    })
                    .await;
                match result {
                    Ok((subscription, _)) => Some(subscription),
                    Err(e) => {
                        tracing::debug!(%prefix, error = %e, "no namespaces from parents");
                        None
                    }
                }
            }
            None => None,
        };
        let mut announcer = request.accept().await?;
        let mut seen = NamespaceSources::default();
        loop {
            let from_parent = async {
                match &mut upstream {
                    Some(subscription) => subscription.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = watch.next() => match event {
                    Some(event) => seen.apply(&mut announcer, Source::Local, event).await?,
                    None => return Ok(()),
                },
                event = from_parent => match event {
                    Ok(Some(event)) => seen.apply(&mut announcer, Source::Parent, event).await?,
                    Ok(None) | Err(_) => {
                        // The parent link ended: what only it reported is gone.
                        upstream = None;
                        seen.parent_lost(&mut announcer).await?;
                    }
                },
                _ = announcer.cancelled() => return Ok(()),
            }
        }
    }
}

/// Where a namespace announcement came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Local,
    Parent,
}

/// The namespaces one SUBSCRIBE_NAMESPACE has announced, and from which sources: a namespace
/// published both here and above is announced once, and withdrawn when neither has it.
#[derive(Debug, Default)]
struct NamespaceSources(HashMap<TrackNamespace, (bool, bool)>);

impl NamespaceSources {
    async fn apply(
        &mut self,
        announcer: &mut NamespaceAnnouncer,
        source: Source,
        event: NamespaceEvent,
    ) -> Result<(), banyan_moq::session::Error> {
        let (namespace, present) = match event {
            NamespaceEvent::Published(ns) => (ns, true),
            NamespaceEvent::Done(ns) => (ns, false),
        };
        let entry = self.0.entry(namespace.clone()).or_default();
        let before = entry.0 || entry.1;
        match source {
            Source::Local => entry.0 = present,
            Source::Parent => entry.1 = present,
        }
        let after = entry.0 || entry.1;
        if !after {
            self.0.remove(&namespace);
        }
        match (before, after) {
            (false, true) => announcer.announce(&namespace).await,
            (true, false) => announcer.done(&namespace).await,
            _ => Ok(()),
        }
    }

    async fn parent_lost(
        &mut self,
        announcer: &mut NamespaceAnnouncer,
    ) -> Result<(), banyan_moq::session::Error> {
        let from_parent: Vec<TrackNamespace> = self
            .0
            .iter()
            .filter(|(_, (_, parent))| *parent)
            .map(|(ns, _)| ns.clone())
            .collect();
        for namespace in from_parent {
            self.apply(announcer, Source::Parent, NamespaceEvent::Done(namespace))
                .await?;
        }
        Ok(())
    }
}
