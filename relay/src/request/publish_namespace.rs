//! PUBLISH_NAMESPACE: register the session as the namespace's publisher until it withdraws,
//! closes or is replaced by another session (`--publisher-takeover`).

use std::sync::Arc;

use banyan_moq::coding::RequestErrorCode;
use banyan_moq::session::PublishNamespaceRequest;

use super::SessionHandler;
use crate::metrics::RefuseReason;

impl SessionHandler {
    pub(super) async fn publish_namespace(
        self: Arc<Self>,
        request: PublishNamespaceRequest,
    ) -> Result<(), banyan_moq::session::Error> {
        let namespace = request.message.track_namespace.clone();
        let _slot = match self.namespace_slot() {
            Ok(slot) => slot,
            Err((code, reason)) => return request.reject(code, reason).await,
        };
        let guard = match self.shared.namespaces.publish(
            namespace.clone(),
            self.session.clone(),
            self.shared.publisher_takeover,
        ) {
            Ok(guard) => guard,
            Err(e) => {
                self.shared.metrics.refuse(RefuseReason::Other);
                return request
                    .reject(RequestErrorCode::Uninterested, &e.to_string())
                    .await;
            }
        };
        let mut publication = request.accept().await?;
        tokio::select! {
            _ = publication.withdrawn() => {}
            _ = self.session.closed() => {}
            // Replaced by another session (`--publisher-takeover`): ending the request stream
            // tells this publisher its namespace is no longer routed to it.
            () = guard.replaced() => {
                tracing::info!(%namespace, "publisher replaced by another session");
            }
        }
        drop(publication);
        drop(guard);
        Ok(())
    }
}
