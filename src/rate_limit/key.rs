//! What a policy counts requests by, and the 64-bit hash a key is kept as: the client's
//! address, a request header (an API key: only its hash is kept, logged or sent to Redis),
//! the route, or one key for everyone.
//!
//! The hash is the crate's own and stable across processes, versions and machines, so
//! replicas sharing Redis agree on keys and an audit log's `key` can be matched by hashing
//! a suspect value the same way. It is not a secret: it hides high-entropy values such as
//! API keys, not low-entropy ones (an IPv4 address can be found by trying them all).

use std::net::IpAddr;

use http::{HeaderName, Request};

use crate::client_address::TrustedProxies;

/// What a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Key {
    /// The client's address (the default): the peer, or behind
    /// [trusted proxies](crate::ObservabilityBuilder::trusted_proxies) the address they
    /// forward. IPv6 clients are counted by their /64 network, the block one subscriber
    /// is given, so rotating addresses within it does not escape the limit.
    ClientAddress,
    /// The value of a request header, e.g. `x-api-key`; kept hashed. Requests without the
    /// header are not limited by this policy (add a [`ClientAddress`](Self::ClientAddress)
    /// policy for them).
    Header(String),
    /// The layer's resolved route (`/users/{id}`): each route has its own quota.
    Route,
    /// One quota for every request the policy applies to.
    Global,
}

impl Key {
    /// Parses `ip`, `header:<name>`, `route` or `global`, as `OBSERVABILITY_RATE_LIMIT_KEY`
    /// reads them.
    pub(crate) fn parse(s: &str) -> Result<Key, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "ip" | "client" | "client_address" => Ok(Key::ClientAddress),
            "route" => Ok(Key::Route),
            "global" => Ok(Key::Global),
            lower => match lower.strip_prefix("header:") {
                Some(name) if !name.trim().is_empty() => Ok(Key::Header(name.trim().to_owned())),
                _ => Err("expected ip, header:<name>, route or global".to_owned()),
            },
        }
    }
}

/// [`Key`] made ready: the header name parsed.
#[derive(Debug, Clone)]
pub(crate) enum KeyKind {
    ClientAddress,
    Header(HeaderName),
    Route,
    Global,
}

impl KeyKind {
    pub(crate) fn compile(key: &Key) -> Result<KeyKind, String> {
        Ok(match key {
            Key::ClientAddress => KeyKind::ClientAddress,
            Key::Header(name) => KeyKind::Header(
                HeaderName::try_from(name.trim())
                    .map_err(|_| format!("{name:?} is not a header name"))?,
            ),
            Key::Route => KeyKind::Route,
            Key::Global => KeyKind::Global,
        })
    }

    /// The label a key kind has in logs.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            KeyKind::ClientAddress => "ip",
            KeyKind::Header(_) => "header",
            KeyKind::Route => "route",
            KeyKind::Global => "global",
        }
    }

    /// The request's key under this kind, hashed; `None` when the request has none (no
    /// known peer, no such header), and the policy then does not apply to it.
    pub(crate) fn of<B>(
        &self,
        req: &Request<B>,
        route: &str,
        trusted: &TrustedProxies,
    ) -> Option<u64> {
        match self {
            KeyKind::ClientAddress => trusted.client_ip(req).map(hash_ip),
            KeyKind::Header(name) => req.headers().get(name).map(|v| hash(b'h', v.as_bytes())),
            KeyKind::Route => Some(hash(b'r', route.as_bytes())),
            KeyKind::Global => Some(hash(b'g', b"")),
        }
    }
}

/// An address's hash: IPv4 whole, IPv6 by its /64 network, each a 64-bit number (the
/// family in the top bits for IPv4) finished by [`mix`]: no byte loop on the hot path.
#[inline]
pub(crate) fn hash_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix(u64::from(u32::from(v4)) | 4 << 56),
        // A /64 fills the word: the family goes in as a different finishing constant.
        IpAddr::V6(v6) => mix((u128::from(v6) >> 64) as u64 ^ 0x6666_6666_6666_6666),
    }
}

/// FNV-1a over a kind tag and the bytes, finished by [`mix`]: stable everywhere, cheap for
/// the few bytes keys are, and well spread in every bit.
pub(crate) fn hash(tag: u8, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(tag);
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    mix(h)
}

/// splitmix64's finaliser: every input bit moves every output bit.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn keys_parse_as_the_environment_writes_them() {
        assert_eq!(Key::parse("ip"), Ok(Key::ClientAddress));
        assert_eq!(Key::parse(" Global "), Ok(Key::Global));
        assert_eq!(Key::parse("route"), Ok(Key::Route));
        assert_eq!(
            Key::parse("header:X-Api-Key"),
            Ok(Key::Header("x-api-key".into()))
        );
        assert!(Key::parse("header:").is_err());
        assert!(Key::parse("cookie").is_err());
        assert!(KeyKind::compile(&Key::Header("bad name".into())).is_err());
    }

    #[test]
    fn the_hash_is_stable_and_separates_kinds_and_networks() {
        // Pinned (FNV-1a 64 then splitmix64's finaliser, computed independently): replicas
        // and audit logs depend on it never changing.
        assert_eq!(hash(b'h', b"secret-api-key"), 0xc9f8_1ff9_2dd5_fe7d);
        assert_ne!(hash(b'h', b"route"), hash(b'r', b"route"));
        let a = hash_ip("2001:db8:1:2::1".parse().unwrap());
        let b = hash_ip("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = hash_ip("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b, "one /64, one key");
        assert_ne!(a, c);
        assert_ne!(
            hash_ip("10.0.0.1".parse().unwrap()),
            hash_ip("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn a_request_without_the_key_is_not_keyed() {
        let trusted = TrustedProxies::default();
        let mut req = Request::get("/").body(()).unwrap();
        let ip = KeyKind::ClientAddress;
        let header = KeyKind::compile(&Key::Header("x-api-key".into())).unwrap();
        assert_eq!(ip.of(&req, "/", &trusted), None);
        assert_eq!(header.of(&req, "/", &trusted), None);
        req.extensions_mut()
            .insert("192.0.2.1:80".parse::<SocketAddr>().unwrap());
        req.headers_mut().insert("x-api-key", "k1".parse().unwrap());
        assert!(ip.of(&req, "/", &trusted).is_some());
        assert_eq!(header.of(&req, "/", &trusted), Some(hash(b'h', b"k1")));
        assert_eq!(
            KeyKind::Route.of(&req, "/a", &trusted),
            Some(hash(b'r', b"/a"))
        );
    }
}
