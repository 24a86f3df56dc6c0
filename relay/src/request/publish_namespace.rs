//! PUBLISH_NAMESPACE: register the session as the namespace's publisher until it withdraws,
//! closes or is replaced by another session (`--publisher-takeover`). A REQUEST_UPDATE on it
//! may carry a fresh token for the session (refused: the publication ends).

use std::sync::Arc;

use banyan_moq::coding::RequestErrorCode;
use banyan_moq::message::{Message, RequestError, RequestOk};
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
        {
            let replaced = guard.replaced();
            tokio::pin!(replaced);
            loop {
                tokio::select! {
                    update = publication.next_update() => match update {
                        // A fresh token for the session (draft-18: REQUEST_UPDATE may carry
                        // AUTHORIZATION TOKEN); a refused one ends the publication.
                        Ok(Some(update)) => {
                            let answer: Message = match self.refresh(&update.parameters.authorization_tokens) {
                                Ok(()) => RequestOk::default().into(),
                                Err(e) => {
                                    let reason = format!("token refresh refused: {e}");
                                    let refusal = RequestError::new(e.request_code(), 0, reason.as_str());
                                    let _ = publication.respond(refusal.into()).await;
                                    break;
                                }
                            };
                            if publication.respond(answer).await.is_err() {
                                break;
                            }
                        }
                        Ok(None) | Err(_) => break,
                    },
                    _ = self.session.closed() => break,
                    // Replaced by another session (`--publisher-takeover`): ending the request
                    // stream tells this publisher its namespace is no longer routed to it.
                    () = &mut replaced => {
                        tracing::info!(%namespace, "publisher replaced by another session");
                        break;
                    }
                }
            }
        }
        drop(publication);
        drop(guard);
        Ok(())
    }
}
