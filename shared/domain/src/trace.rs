//! The X-Ray trace a run travels with, from its launch through the outbox and the queue.

/// An AWS X-Ray trace header (`Root=1-…;Parent=…;Sampled=1`): taken from the request that
/// launched a run, written with its event to the outbox and sent as the queue message's
/// `AWSTraceHeader`, so that the worker's work on the run joins the launch's trace. A value
/// that does not look like one (too long, odd characters, no `Root=1-<8 hex>-<24 hex>`, a
/// `Parent` that is not 16 hex digits, a `Sampled` other than `0`, `1` or `?`) is dropped,
/// never stored or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader(String);

impl TraceHeader {
    /// Longer than any header X-Ray writes (root, parent, sampling decision, lineage).
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"=;:-_.".contains(&b);
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(plain) {
            return None;
        }
        let hex_of = |part: Option<&str>, len: usize| {
            part.is_some_and(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        let field = |name: &str| {
            raw.split(';')
                .find_map(|part| part.strip_prefix(name)?.strip_prefix('='))
        };
        let mut root = field("Root")?.split('-');
        let valid = root.next() == Some("1")
            && hex_of(root.next(), 8)
            && hex_of(root.next(), 24)
            && root.next().is_none()
            && field("Parent").is_none_or(|parent| hex_of(Some(parent), 16))
            && field("Sampled").is_none_or(|sampled| ["0", "1", "?"].contains(&sampled));
        valid.then(|| TraceHeader(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TraceHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TraceHeader;

    #[test]
    fn x_ray_headers_parse_and_anything_else_is_dropped() {
        let lambda = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(TraceHeader::parse(lambda).unwrap().as_str(), lambda);
        let lineage = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0;Lineage=1:a87bd80c:0";
        assert!(TraceHeader::parse(lineage).is_some());
        for hostile in [
            "",
            "Sampled=1",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e98-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a99427279z",
            "Root=1-5759e988-bd862e3fe1be46a994272793-00",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=a\u{0}b",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=a b",
            "Root=1-5759e988-bd862e3fe1be46a994272793\r\nX-Injected: 1",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=zz",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=7",
        ] {
            assert_eq!(TraceHeader::parse(hostile), None, "{hostile:?}");
        }
        let long = format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent={}",
            "a".repeat(300)
        );
        assert_eq!(TraceHeader::parse(&long), None);
    }
}
