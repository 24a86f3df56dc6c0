//! Route resolution: which parents serve a namespace, from `--upstream` or the control plane.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use banyan_control::api::{route_path, RouteResponse};
use banyan_moq::coding::TrackNamespace;
use url::Url;

/// What [`Resolver::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Url>, ResolveError>> + Send + 'a>>;

/// Names the parents of a namespace, most preferred first. An empty list means "no parent":
/// the namespace can only be published here.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    /// The parents to try for `namespace`.
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a>;
}

/// Why no parent list could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The control plane could not be asked or gave an unusable answer.
    #[error("control plane {url}: {reason}")]
    Control {
        /// The route URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// The parents from `--upstream`, the same for every namespace.
#[derive(Debug, Clone)]
pub struct StaticResolver {
    parents: Vec<Url>,
}

impl StaticResolver {
    /// Parents in order of preference.
    pub fn new(parents: Vec<Url>) -> Self {
        Self { parents }
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, _namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(std::future::ready(Ok(self.parents.clone())))
    }
}

/// Asks the control plane: `GET {control}/v1/route/{namespace}?relay={relay_id}`, answered with
/// `{"upstream": [URL, ...]}` (the contract in [`banyan_control::api`]: the namespace is its
/// `/`-separated path, each field percent-encoded). A 404 means "no parent".
#[derive(Debug, Clone)]
pub struct HttpResolver {
    control: Url,
    relay_id: String,
    client: reqwest::Client,
}

impl HttpResolver {
    /// A resolver asking the control plane at `control` (an `http://` base URL) on behalf of
    /// `relay_id`, giving up on an answer after `timeout`.
    pub fn new(control: Url, relay_id: String, timeout: Duration) -> Result<Self, ResolveError> {
        let client =
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| ResolveError::Control {
                    url: control.to_string(),
                    reason: format!("building the HTTP client: {e}"),
                })?;
        Ok(Self {
            control,
            relay_id,
            client,
        })
    }

    /// The route URL for `namespace`.
    pub fn route_url(&self, namespace: &TrackNamespace) -> Result<Url, ResolveError> {
        let base = self.control.as_str().trim_end_matches('/');
        let text = format!("{base}{}", route_path(&namespace.to_path(), &self.relay_id));
        Url::parse(&text).map_err(|e| ResolveError::Control {
            url: text.clone(),
            reason: format!("not a URL: {e}"),
        })
    }

    async fn ask(&self, namespace: &TrackNamespace) -> Result<Vec<Url>, ResolveError> {
        let url = self.route_url(namespace)?;
        let failed = |reason: String| ResolveError::Control {
            url: url.to_string(),
            reason,
        };
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let route: RouteResponse = response
            .json()
            .await
            .map_err(|e| failed(format!("unreadable route: {e}")))?;
        route
            .upstream
            .iter()
            .map(|u| crate::config::parse_upstream(u).map_err(&failed))
            .collect()
    }
}

impl Resolver for HttpResolver {
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(self.ask(namespace))
    }
}

/// Several resolvers asked in turn: the first non-empty answer wins. Errors fall through to the
/// next resolver; if none answers, the last error is returned.
#[derive(Debug, Clone)]
pub struct Resolvers(pub Vec<Arc<dyn Resolver>>);

impl Resolver for Resolvers {
    fn resolve<'a>(&'a self, namespace: &'a TrackNamespace) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut error = None;
            for resolver in &self.0 {
                match resolver.resolve(namespace).await {
                    Ok(parents) if !parents.is_empty() => return Ok(parents),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%namespace, error = %e, "route lookup failed");
                        error = Some(e);
                    }
                }
            }
            error.map_or(Ok(Vec::new()), Err)
        })
    }
}
