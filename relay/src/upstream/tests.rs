//! Refusal classes, Hop IDs, route URLs and resolver fall-through.

use std::sync::Arc;

use banyan_moq::coding::TrackNamespace;

use super::*;

#[test]
fn only_a_missing_publisher_is_worth_waiting_for() {
    let refused = |code, reason: &str| UpstreamError::Refused {
        code,
        reason: reason.into(),
    };
    assert!(UpstreamError::NoParent.not_published_yet());
    assert!(refused(RequestErrorCode::DoesNotExist, "no publisher for namespace a").not_published_yet());
    // A refused relay path stays refused, however long one waits.
    for reason in [
        "relay loop: this relay (1f) is already on the request's path [1f]",
        "relay tree too deep: this relay would be hop 4 of at most 3 (path [1, 2, 3])",
    ] {
        assert!(!refused(RequestErrorCode::DoesNotExist, reason).not_published_yet());
    }
    assert!(!refused(RequestErrorCode::Unauthorized, "no").not_published_yet());
    assert!(!UpstreamError::Unreachable("x".into()).not_published_yet());
}

#[test]
fn hop_ids_are_stable_distinct_and_varint_sized() {
    assert_eq!(hop_id("edge-1"), hop_id("edge-1"));
    assert_ne!(hop_id("edge-1"), hop_id("edge-2"));
    assert!(hop_id("edge-1") < 1 << 62);
}

#[test]
fn route_urls_carry_the_namespace_text_form_and_relay_id() {
    let resolver = HttpResolver::new(
        Url::parse("http://control:8080/base/").unwrap(),
        "edge 1".into(),
        Duration::from_secs(1),
    )
    .unwrap();
    let namespace = TrackNamespace::from_path("live/show 1").unwrap();
    assert_eq!(
        resolver.route_url(&namespace).unwrap().as_str(),
        "http://control:8080/base/v1/route/live/show%201?relay=edge%201"
    );
}

#[derive(Debug)]
struct Fixed(Result<Vec<Url>, ResolveError>);

impl Resolver for Fixed {
    fn resolve<'a>(&'a self, _: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}

#[tokio::test]
async fn resolvers_fall_through_errors_and_empty_answers() {
    let a = Url::parse("moqt://a:1").unwrap();
    let error = ResolveError::Control {
        url: "x".into(),
        reason: "down".into(),
    };
    let ns = TrackNamespace::default();
    let chain = Resolvers(vec![
        Arc::new(Fixed(Err(error.clone()))),
        Arc::new(Fixed(Ok(vec![]))),
        Arc::new(Fixed(Ok(vec![a.clone()]))),
    ]);
    assert_eq!(chain.resolve(&ns).await, Ok(vec![a]));
    let failing = Resolvers(vec![
        Arc::new(Fixed(Ok(vec![]))),
        Arc::new(Fixed(Err(error.clone()))),
    ]);
    assert_eq!(failing.resolve(&ns).await, Err(error));
    let empty = Resolvers(vec![Arc::new(Fixed(Ok(vec![])))]);
    assert_eq!(empty.resolve(&ns).await, Ok(vec![]));
}
