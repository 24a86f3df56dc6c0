/// A MoQT protocol version, negotiated by ALPN (raw QUIC) or `WT-Available-Protocols`
/// (WebTransport). Every decoder takes one so later drafts can be served beside draft-18.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Version {
    /// draft-ietf-moq-transport-18.
    #[default]
    Draft18,
}

impl Version {
    /// Every version this build speaks, most preferred first.
    pub const SUPPORTED: &'static [Version] = &[Version::Draft18];

    /// The ALPN / WebTransport protocol token for this version.
    pub const fn alpn(self) -> &'static str {
        match self {
            Version::Draft18 => "moqt-18",
        }
    }

    /// The version named by an ALPN token, if this build speaks it.
    pub fn from_alpn(alpn: &str) -> Option<Version> {
        Self::SUPPORTED.iter().copied().find(|v| v.alpn() == alpn)
    }

    /// Choose the first of our versions that the peer offers.
    pub fn negotiate<S: AsRef<str>>(offered: &[S]) -> Option<Version> {
        Self::SUPPORTED
            .iter()
            .copied()
            .find(|v| offered.iter().any(|o| o.as_ref() == v.alpn()))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.alpn())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_only_known_versions() {
        assert_eq!(
            Version::negotiate(&["moqt-16", "moqt-18"]),
            Some(Version::Draft18)
        );
        assert_eq!(Version::negotiate(&["moqt-99", "h3"]), None);
        assert_eq!(Version::from_alpn("moqt-18"), Some(Version::Draft18));
    }
}
