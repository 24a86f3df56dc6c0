//! [`RelayConfig::validate`]: the range and consistency checks that run after the layers are
//! merged, one function per concern, and the [`ConfigError`] they return.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{RelayConfig, MAX_CONTROL_MESSAGE_SIZE};
use crate::auth::AuthSettings;
use crate::heartbeat::HeartbeatSettings;
use crate::interact::InteractSettings;
use crate::relay::ServerSettings;
use crate::request::LimitSettings;
use crate::track::cache::CacheSettings;
use crate::upstream::UpstreamSettings;

/// A configuration that cannot be used; returned by [`RelayConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither `--tls-cert`/`--tls-key` nor `--dev-cert` was given.
    #[error("no TLS certificate: give --tls-cert PEM and --tls-key PEM, or --dev-cert for a development certificate")]
    NoCertificate,
    /// `--dev-cert` together with `--tls-cert` or `--tls-key`.
    #[error("--dev-cert cannot be combined with --tls-cert/--tls-key: choose one way to get a certificate")]
    BothCertificateModes,
    /// Only one of `--tls-cert` and `--tls-key`.
    #[error("--tls-cert and --tls-key must be given together")]
    IncompleteCertificate,
    /// No `--auth-key` and no `--insecure-no-auth`.
    #[error("refusing to start without authentication: give --auth-key FILE, or --insecure-no-auth to accept every client without a token")]
    NoAuth,
    /// Both `--auth-key` and `--insecure-no-auth`.
    #[error("--auth-key and --insecure-no-auth contradict each other: give one")]
    BothAuthModes,
    /// A file named by a flag does not exist or is not a regular file.
    #[error("{flag} {}: file not found", path.display())]
    FileMissing {
        /// The flag that names the file.
        flag: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// A limit outside its allowed range.
    #[error("{flag} = {value} is out of range: {expected}")]
    OutOfRange {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// Both `--upstream-ca` and `--upstream-insecure`.
    #[error("--upstream-ca and --upstream-insecure contradict each other: give one")]
    BothUpstreamVerifications,
    /// `--log` is not a valid tracing filter.
    #[error("--log {filter:?} is not a valid log filter: {reason}")]
    BadLogFilter {
        /// The filter given.
        filter: String,
        /// Why it was refused.
        reason: String,
    },
}

impl RelayConfig {
    /// Check ranges and consistency: exactly one certificate mode, an auth key or an explicit
    /// `--insecure-no-auth`, files that exist, limits in range, a parseable log filter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_certificate(&self.server)?;
        check_auth(&self.auth)?;
        check_limits(&self.limits)?;
        check_cache(&self.cache, &self.limits)?;
        check_heartbeat(&self.heartbeat)?;
        check_upstream(&self.upstream)?;
        check_interact(&self.interact)?;
        check_log(&self.log)
    }
}

/// Exactly one certificate source: `--tls-cert` with `--tls-key` (files that exist), or `--dev-cert`.
fn check_certificate(server: &ServerSettings) -> Result<(), ConfigError> {
    match (server.dev_cert, &server.tls_cert, &server.tls_key) {
        (true, None, None) => Ok(()),
        (true, _, _) => Err(ConfigError::BothCertificateModes),
        (false, None, None) => Err(ConfigError::NoCertificate),
        (false, Some(cert), Some(key)) => {
            check_file("--tls-cert", cert)?;
            check_file("--tls-key", key)
        }
        (false, _, _) => Err(ConfigError::IncompleteCertificate),
    }
}

/// An `--auth-key` file that exists, or `--insecure-no-auth`, not both.
fn check_auth(auth: &AuthSettings) -> Result<(), ConfigError> {
    match (&auth.auth_key, auth.insecure_no_auth) {
        (Some(_), true) => Err(ConfigError::BothAuthModes),
        (None, false) => Err(ConfigError::NoAuth),
        (Some(key), false) => check_file("--auth-key", key),
        (None, true) => Ok(()),
    }
}

/// Session limits: message size within the draft's bound, every count and the request rate
/// at least 1, a burst of at least the rate.
fn check_limits(limits: &LimitSettings) -> Result<(), ConfigError> {
    check_range(
        "--max-message-size",
        limits.max_message_size,
        16..=MAX_CONTROL_MESSAGE_SIZE,
        "16 to 65535 bytes",
    )?;
    for (flag, value) in [
        ("--max-sessions", limits.max_sessions),
        (
            "--max-subscriptions-per-session",
            limits.max_subscriptions_per_session,
        ),
        ("--max-namespaces-per-session", limits.max_namespaces_per_session),
    ] {
        check_range(flag, value, 1..=usize::MAX, "at least 1")?;
    }
    check_range(
        "--max-object-size",
        limits.max_object_size,
        1..=usize::MAX,
        "at least 1 byte",
    )?;
    check_range(
        "--request-rate",
        limits.request_rate,
        1..=u32::MAX,
        "at least 1 per second",
    )?;
    check_range(
        "--request-burst",
        limits.request_burst,
        limits.request_rate.max(1)..=u32::MAX,
        "at least --request-rate",
    )
}

/// The cache keeps at least one group, and has room for at least the largest object.
fn check_cache(cache: &CacheSettings, limits: &LimitSettings) -> Result<(), ConfigError> {
    check_range("--cache-groups", cache.cache_groups, 1..=usize::MAX, "at least 1")?;
    check_range(
        "--cache-bytes",
        cache.cache_bytes,
        limits.max_object_size..=usize::MAX,
        "at least --max-object-size",
    )
}

/// What heartbeats report: a positive viewer capacity if given, a region the control plane accepts.
fn check_heartbeat(heartbeat: &HeartbeatSettings) -> Result<(), ConfigError> {
    if let Some(viewers) = heartbeat.capacity_viewers {
        check_range("--capacity-viewers", viewers, 1..=u32::MAX, "at least 1")?;
    }
    if heartbeat.region.len() > banyan_control::api::MAX_NAME_LEN
        || heartbeat.region.chars().any(char::is_control)
    {
        return Err(ConfigError::OutOfRange {
            flag: "--region",
            value: heartbeat.region.clone(),
            expected: "at most 1024 bytes, no control characters",
        });
    }
    Ok(())
}

/// Parents: a depth and timeout in range, one way to verify them (a CA file that exists).
fn check_upstream(upstream: &UpstreamSettings) -> Result<(), ConfigError> {
    check_range(
        "--max-depth",
        upstream.max_depth,
        1..=banyan_moq::message::hop_path::MAX_HOPS,
        "1 to 32",
    )?;
    check_duration(
        "--upstream-timeout",
        upstream.upstream_timeout,
        Duration::from_millis(100)..=Duration::from_secs(60),
        "100ms to 60s",
    )?;
    if upstream.upstream_insecure && upstream.upstream_ca.is_some() {
        return Err(ConfigError::BothUpstreamVerifications);
    }
    match &upstream.upstream_ca {
        Some(ca) => check_file("--upstream-ca", ca),
        None => Ok(()),
    }
}

/// Interaction timing in range.
fn check_interact(interact: &InteractSettings) -> Result<(), ConfigError> {
    check_duration(
        "--like-window",
        interact.like_window,
        Duration::from_millis(10)..=Duration::from_secs(10),
        "10ms to 10s",
    )?;
    check_duration(
        "--interact-idle",
        interact.interact_idle,
        Duration::from_secs(1)..=Duration::from_secs(86_400),
        "1s to 24h",
    )
}

/// `--log` parses as a tracing filter.
fn check_log(filter: &str) -> Result<(), ConfigError> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| ConfigError::BadLogFilter {
            filter: filter.to_owned(),
            reason: e.to_string(),
        })
}

fn check_file(flag: &'static str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::FileMissing {
            flag,
            path: path.to_owned(),
        })
    }
}

fn check_range<T: PartialOrd + ToString>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
) -> Result<(), ConfigError> {
    check_within(flag, value, range, expected, T::to_string)
}

fn check_duration(
    flag: &'static str,
    value: Duration,
    range: std::ops::RangeInclusive<Duration>,
    expected: &'static str,
) -> Result<(), ConfigError> {
    check_within(flag, value, range, expected, |d| {
        humantime::format_duration(*d).to_string()
    })
}

/// `value` must be in `range`; else an error showing it with `show`.
fn check_within<T: PartialOrd>(
    flag: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    expected: &'static str,
    show: impl Fn(&T) -> String,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            flag,
            value: show(&value),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{load, Fixture, MINIMAL};

    #[test]
    fn certificate_modes() {
        let err = load(&["--insecure-no-auth"], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::NoCertificate)
        );

        let fx = Fixture::new("certs");
        let pem = fx.file("cert.pem", "x");
        let pem = pem.to_str().unwrap();
        let err = load(
            &[
                "--insecure-no-auth",
                "--dev-cert",
                "--tls-cert",
                pem,
                "--tls-key",
                pem,
            ],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::BothCertificateModes)
        );

        let err = load(&["--insecure-no-auth", "--tls-cert", pem], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::IncompleteCertificate)
        );

        let err = load(
            &[
                "--insecure-no-auth",
                "--tls-cert",
                pem,
                "--tls-key",
                "/nonexistent.pem",
            ],
            &[],
        )
        .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ConfigError>(),
            Some(ConfigError::FileMissing {
                flag: "--tls-key",
                ..
            })
        ));

        let c = load(&["--insecure-no-auth", "--tls-cert", pem, "--tls-key", pem], &[]).unwrap();
        assert_eq!(c.server.tls_files(), Some((Path::new(pem), Path::new(pem))));
    }

    #[test]
    fn auth_is_required_unless_insecure() {
        let err = load(&["--dev-cert"], &[]).unwrap_err();
        assert_eq!(err.downcast_ref::<ConfigError>(), Some(&ConfigError::NoAuth));
        assert!(err.to_string().contains("--insecure-no-auth"));

        let err = load(&["--dev-cert", "--auth-key", "/nonexistent.key"], &[]).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<ConfigError>(),
            Some(ConfigError::FileMissing {
                flag: "--auth-key",
                ..
            })
        ));

        let fx = Fixture::new("auth");
        let key = fx.file("k", "secret");
        let key = key.to_str().unwrap();
        assert!(load(&["--dev-cert", "--auth-key", key], &[]).is_ok());
        let err = load(&["--dev-cert", "--auth-key", key, "--insecure-no-auth"], &[]).unwrap_err();
        assert_eq!(
            err.downcast_ref::<ConfigError>(),
            Some(&ConfigError::BothAuthModes)
        );
    }

    #[test]
    fn limits_are_checked() {
        for (flag, value) in [
            ("--max-message-size", "65536"),
            ("--max-message-size", "0"),
            ("--max-sessions", "0"),
            ("--cache-groups", "0"),
            ("--request-rate", "0"),
            ("--request-burst", "10"),
            ("--cache-bytes", "1KiB"),
            ("--log", "foo=bar=baz"),
            ("--capacity-viewers", "0"),
            ("--region", "a\u{7}b"),
        ] {
            let err = load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).unwrap_err();
            assert!(
                err.downcast_ref::<ConfigError>().is_some(),
                "{flag} {value}: {err:#}"
            );
        }
        for (flag, value) in [
            ("--max-sessions", "-1"),
            ("--rendezvous-max", "soon"),
            ("--listen", "nowhere"),
            ("--public-host", "relay.example:4443"),
            ("--public-host", "moqt://relay.example"),
            ("--public-host", ""),
            ("--capacity-egress", "fast"),
            ("--capacity-viewers", "-1"),
        ] {
            assert!(
                load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).is_err(),
                "{flag}"
            );
        }
        let err = load(MINIMAL, &[("BANYAN_RELAY_MAX_SESSIONS", "lots")]).unwrap_err();
        assert!(format!("{err:#}").contains("BANYAN_RELAY_MAX_SESSIONS"));
    }

    #[test]
    fn interaction_durations_out_of_range_are_errors() {
        for (flag, value) in [
            ("--like-window", "0s"),
            ("--like-window", "1m"),
            ("--interact-idle", "0s"),
            ("--interact-idle", "2days"),
        ] {
            let err = load(&["--dev-cert", "--insecure-no-auth", flag, value], &[]).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(flag), "{flag} {value}: {text}");
        }
    }
}
