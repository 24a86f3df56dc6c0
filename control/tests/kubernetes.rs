//! The Kubernetes spawner against a fake API server: spawning and stopping relays send exactly
//! the expected requests to the StatefulSet's scale subresource, and only the highest ordinals
//! are ever removed.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Json;
use banyan_control::spawner::kubernetes::KubernetesSpawner;
use banyan_control::spawner::{SpawnError, Spawner};
use serde_json::{json, Value};

const SCALE: &str = "/apis/apps/v1/namespaces/banyan/statefulsets/banyan-relay/scale";

#[derive(Default)]
struct Fake {
    replicas: i64,
    /// (method, path and query, content type, body)
    requests: Vec<(String, String, String, String)>,
}

type Shared = Arc<Mutex<Fake>>;

fn scale(replicas: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "banyan-relay", "namespace": "banyan"},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas}
    })
}

async fn handle(State(fake): State<Shared>, request: Request) -> axum::response::Response {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut fake = fake.lock().unwrap();
    fake.requests
        .push((method.clone(), uri.clone(), content_type, body.clone()));
    if !uri.starts_with(SCALE) {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    }
    if method == "PATCH" {
        let patch: Value = serde_json::from_str(&body).unwrap();
        fake.replicas = patch["spec"]["replicas"].as_i64().unwrap();
    }
    Json(scale(fake.replicas)).into_response()
}

async fn fake_api(replicas: i64) -> (Shared, kube::Client) {
    let fake: Shared = Arc::new(Mutex::new(Fake {
        replicas,
        requests: vec![],
    }));
    let app = axum::Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (fake, kube::Client::try_from(config).unwrap())
}

fn take(fake: &Shared) -> Vec<(String, String, String, String)> {
    std::mem::take(&mut fake.lock().unwrap().requests)
}

fn get() -> (String, String, String, String) {
    ("GET".into(), SCALE.into(), String::new(), String::new())
}

fn patch(replicas: u32) -> (String, String, String, String) {
    (
        "PATCH".into(),
        format!("{SCALE}?"),
        "application/merge-patch+json".into(),
        format!("{{\"spec\":{{\"replicas\":{replicas}}}}}"),
    )
}

#[tokio::test]
async fn spawn_and_stop_scale_the_statefulset_with_exact_requests() {
    let (fake, client) = fake_api(2).await;
    let spawner = KubernetesSpawner::new(client, "banyan", "banyan-relay");

    assert_eq!(spawner.spawn().await.unwrap(), "banyan-relay-2");
    assert_eq!(take(&fake), vec![get(), patch(3)]);
    assert_eq!(spawner.spawn().await.unwrap(), "banyan-relay-3");
    assert_eq!(take(&fake), vec![get(), patch(4)]);
    assert_eq!(spawner.running(), vec!["banyan-relay-2", "banyan-relay-3"]);

    // Stopping a relay below a live one cannot scale down yet: one read, no write.
    spawner.stop("banyan-relay-2".into()).await.unwrap();
    assert_eq!(take(&fake), vec![get()]);
    assert_eq!(fake.lock().unwrap().replicas, 4);
    // Stopping the highest removes it and the retired one below it in one write.
    spawner.stop("banyan-relay-3".into()).await.unwrap();
    assert_eq!(take(&fake), vec![get(), patch(2)]);
    assert_eq!(fake.lock().unwrap().replicas, 2);
    assert!(spawner.running().is_empty());

    // Relays it did not spawn are never touched.
    let err = spawner.stop("banyan-relay-0".into()).await.unwrap_err();
    assert!(matches!(err, SpawnError::Unknown(_)), "{err}");
    let err = spawner.stop("other-1".into()).await.unwrap_err();
    assert!(matches!(err, SpawnError::Unknown(_)), "{err}");
    assert!(take(&fake).is_empty());
    // Supervision is the StatefulSet controller's job: no requests.
    spawner.supervise().await.unwrap();
    assert!(take(&fake).is_empty());
}

#[tokio::test]
async fn api_errors_surface_as_backend_errors() {
    let (_fake, client) = fake_api(0).await;
    let spawner = KubernetesSpawner::new(client, "banyan", "missing");
    let err = spawner.spawn().await.unwrap_err();
    assert!(matches!(err, SpawnError::Backend(_)), "{err}");
    assert!(spawner.running().is_empty());
}
