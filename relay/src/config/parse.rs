//! The value parsers the settings structs share: URLs (parents, control plane), host names,
//! bit rates and byte sizes, for flags (`value_parser`) and, through the `serde_*` modules,
//! for TOML.

use serde::Deserialize;
use url::Url;

/// Parse and check an upstream URL: `moqt://` (raw QUIC) or `https://` (WebTransport), with a host.
pub fn parse_upstream(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match url.scheme() {
        "moqt" | "https" => {}
        other => {
            return Err(format!(
                "{text:?}: scheme {other:?} is not supported (use moqt://host:port for raw QUIC or https://host:port/path for WebTransport)"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?}: credentials in the URL are not supported"));
    }
    Ok(url)
}

/// Parse the control plane's base URL: `http://host[:port][/path]`.
pub fn parse_control(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "{text:?}: the control plane URL must be http://host:port (scheme {:?} is not supported)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

/// Parse `--public-host`: a DNS name or an IP address (IPv6 with or without brackets), no
/// port, scheme or path.
pub fn parse_public_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    let bracketed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let bad = || {
        format!(
            "{text:?} is not a host name or IP address (e.g. relay.example.com, 198.51.100.7, [2001:db8::7])"
        )
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let url = Url::parse(&format!("moqt://{bracketed}:1")).map_err(|_| bad())?;
    // A port in the text would make the URL's port differ from the probe's.
    if url.port() != Some(1) || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(bracketed)
}

/// Parse a bit rate in bits per second: a plain number, or a number with a decimal unit:
/// `Kbps`, `Mbps`, `Gbps`, `Tbps` (also `K`, `M`, `G`, `T`; `bps` alone is 1); e.g. `1Gbps`,
/// `500 Mbps`, `0`.
pub fn parse_bitrate(text: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(text)
        .ok_or_else(|| format!("{text:?} is not a bit rate (e.g. 0, 500Mbps, 10Gbps)"))?;
    let unit = unit.strip_suffix("bps").unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown rate unit {other:?} (use Kbps, Mbps or Gbps)"
            ))
        }
    };
    // TOML integers are signed 64-bit; larger rates could not be merged with a config file.
    n.checked_mul(mult)
        .filter(|bps| i64::try_from(*bps).is_ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parse a byte size: a plain number of bytes, or a number with a unit: `KiB`, `MiB`, `GiB`
/// (also written `K`, `M`, `G`), or decimal `KB`, `MB`, `GB`; e.g. `8MiB`, `256 MiB`, `65535`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (n, unit) =
        number_and_unit(text).ok_or_else(|| format!("{text:?} is not a size (e.g. 65535, 8MiB, 256MiB)"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown size unit {other:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The leading integer of `text` and the (trimmed) unit after it: `"256 MiB"` → `(256, "MiB")`.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    Some((digits.parse().ok()?, unit.trim()))
}

/// Byte sizes as an integer or a string with a unit (see [`super::parse_size`]).
pub(crate) mod serde_size {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Int(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        match Size::deserialize(d)? {
            Size::Int(n) => usize::try_from(n).map_err(|_| serde::de::Error::custom("size too large")),
            Size::Text(t) => super::parse_size(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// `--public-host` from TOML, checked (and an IPv6 address bracketed) like the flag.
pub(crate) fn deserialize_public_host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_public_host(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Bit rates as an integer or a string with a unit (see [`super::parse_bitrate`]).
pub(crate) mod serde_bitrate {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Int(u64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match Rate::deserialize(d)? {
            Rate::Int(n) => Ok(n),
            Rate::Text(t) => super::parse_bitrate(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The control URL as a string, checked by [`super::parse_control`].
pub(crate) mod serde_control {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
        match url {
            Some(url) => s.serialize_some(url.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| super::parse_control(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Upstream URLs as an array of strings, each checked by [`super::parse_upstream`].
pub(crate) mod serde_urls {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(urls.iter().map(Url::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| super::parse_upstream(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{load, Fixture, MINIMAL};

    #[test]
    fn bitrates_and_hosts_parse() {
        assert_eq!(parse_bitrate("0"), Ok(0));
        assert_eq!(parse_bitrate("1500"), Ok(1500));
        assert_eq!(parse_bitrate("1500bps"), Ok(1500));
        assert_eq!(parse_bitrate("10Kbps"), Ok(10_000));
        assert_eq!(parse_bitrate("500 Mbps"), Ok(500_000_000));
        assert_eq!(parse_bitrate("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bitrate("2Tbps"), Ok(2_000_000_000_000));
        assert!(parse_bitrate("").is_err());
        assert!(parse_bitrate("Gbps").is_err());
        assert!(parse_bitrate("1 GiB").is_err());
        assert!(parse_bitrate("99999999999Tbps").is_err());
        assert_eq!(parse_public_host("relay.example"), Ok("relay.example".into()));
        assert_eq!(parse_public_host("198.51.100.7"), Ok("198.51.100.7".into()));
        assert_eq!(parse_public_host("::1"), Ok("[::1]".into()));
        assert_eq!(parse_public_host("[::1]"), Ok("[::1]".into()));
        for bad in ["", "a b", "h:1", "[::1]:1", "h/p", "u@h", "moqt://h"] {
            assert!(parse_public_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("65535"), Ok(65535));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("256 MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn invalid_urls_are_errors() {
        for bad in [
            "http://x:1",
            "moqt://",
            "not a url",
            "quic://x:1",
            "https://user:pw@x/",
        ] {
            assert!(
                load(&["--dev-cert", "--insecure-no-auth", "--upstream", bad], &[]).is_err(),
                "{bad}"
            );
        }
        let err = load(MINIMAL, &[("BANYAN_RELAY_UPSTREAM", "ftp://x")]).unwrap_err();
        assert!(format!("{err:#}").contains("BANYAN_RELAY_UPSTREAM"), "{err:#}");

        let fx = Fixture::new("badurl");
        let toml = fx.file("relay.toml", "upstream = [\"gopher://x\"]\n");
        assert!(load(
            &[
                "--dev-cert",
                "--insecure-no-auth",
                "--config",
                toml.to_str().unwrap()
            ],
            &[]
        )
        .is_err());
    }
}
