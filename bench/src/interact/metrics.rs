//! Read a relay's Prometheus text (`GET http://host:port/metrics`) over plain HTTP/1.1, for
//! the counters `/proc` cannot give: objects and bytes the relay sent, likes it accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::Error;

/// `banyan-relay`'s metric name prefix.
pub const PREFIX: &str = "banyan_relay_";

/// Every sample of one scrape: series (name with labels, as printed) → value.
pub type Scrape = BTreeMap<String, f64>;

/// Fetch and parse `url` (scheme `http`), giving up after `timeout`.
pub async fn scrape(url: &Url, timeout: Duration) -> Result<Scrape, Error> {
    let fail = |what: String| Error::Config(format!("scraping {url}: {what}"));
    if url.scheme() != "http" {
        return Err(fail("only http:// is supported".into()));
    }
    let host = url.host_str().ok_or_else(|| fail("no host".into()))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n",
            url.path()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("no HTTP header".into()))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(fail(head.lines().next().unwrap_or_default().to_string()));
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(fail("chunked responses are not supported".into()));
    }
    Ok(parse(body))
}

/// Parse Prometheus text exposition: `series value` lines, comments skipped.
pub fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// How much `series` (without the prefix) grew from `before` to `after`.
pub fn delta(before: &Scrape, after: &Scrape, series: &str) -> Option<f64> {
    let key = format!("{PREFIX}{series}");
    Some(after.get(&key)? - before.get(&key).copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_with_and_without_labels() {
        let text = "# HELP banyan_relay_objects_out_total Objects sent.\n\
                    # TYPE banyan_relay_objects_out_total counter\n\
                    banyan_relay_objects_out_total 42\n\
                    banyan_relay_interactions_refused_total{reason=\"rate_limited\"} 3\n";
        let before = parse("banyan_relay_objects_out_total 40\n");
        let after = parse(text);
        assert_eq!(delta(&before, &after, "objects_out_total"), Some(2.0));
        assert_eq!(
            delta(
                &before,
                &after,
                "interactions_refused_total{reason=\"rate_limited\"}"
            ),
            Some(3.0)
        );
        assert_eq!(delta(&before, &after, "nothing"), None);
    }
}
