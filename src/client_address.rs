//! The client's address: THE one peer-address lookup of the crate, and the trusted-proxies
//! rule that says when a forwarded address may be believed.
//!
//! The peer is axum's `ConnectInfo<SocketAddr>` or a `SocketAddr` request extension. Behind
//! proxies, the client address is read from `X-Forwarded-For` (or `Forwarded`, if that is
//! the header the proxies write) only when the peer itself is a trusted proxy, and it is
//! the right-most address that is not a trusted proxy: every proxy appends the address it
//! saw, so entries left of the nearest untrusted one are whatever the client chose to send.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{HeaderName, FORWARDED};
use http::Request;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The connection's peer: axum's `ConnectInfo<SocketAddr>`, else a `SocketAddr` extension.
pub(crate) fn peer_address<B>(req: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0);
    }
    req.extensions().get::<SocketAddr>().copied()
}

/// Which header the trusted proxies write the client's address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, Envoy, cloud load
    /// balancers): the default.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    /// Parses `x-forwarded-for` or `forwarded` (any case).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            _ => None,
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// An address (`10.1.2.3`, `::1`) or a CIDR network (`10.0.0.0/8`, `fd00::/8`,
    /// `::ffff:10.0.0.0/104`).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        // Peers are compared as IPv4 when IPv4-mapped, so a mapped network is made IPv4 too.
        Some(match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => IpNet {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => IpNet { addr, prefix },
            },
            _ => IpNet { addr, prefix },
        })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let mask = |bits: u32, width: u32| -> u128 {
            if bits == 0 {
                0
            } else {
                (!0u128 << (width - bits)) & (!0u128 >> (128 - width))
            }
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = mask(self.prefix.into(), 32);
                u128::from(u32::from(net)) & m == u128::from(u32::from(ip)) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask(self.prefix.into(), 128);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports for an
/// IPv4 peer) as the IPv4 address they are.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The trusted proxies, compiled once by `build()` and shared by every signal that needs
/// the client's address or the original scheme.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

/// Forwarded chains longer than this are not walked further: the nearest hops decide.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// Parses every entry; the error names the first that is not an address or a network.
    pub(crate) fn parse<S: AsRef<str>>(
        entries: &[S],
        header: ForwardedHeader,
    ) -> Result<Self, String> {
        let networks = entries
            .iter()
            .map(|e| {
                let e = e.as_ref();
                IpNet::parse(e).ok_or_else(|| format!("trusted proxy {e:?} is not an IP or CIDR"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks, header })
    }

    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// Whether the request came straight from a trusted proxy (so its forwarding headers
    /// may be believed).
    pub(crate) fn peer_is_trusted<B>(&self, req: &Request<B>) -> bool {
        !self.networks.is_empty() && peer_address(req).is_some_and(|p| self.trusts(p.ip()))
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    /// forwarded address that is not a trusted proxy. `None` without a known peer.
    pub(crate) fn client_ip<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let peer = canonical(peer_address(req)?.ip());
        if self.networks.is_empty() || !self.trusts(peer) {
            return Some(peer);
        }
        let mut nearest = peer;
        let mut hops = 0;
        // Header lines in order, entries right to left: the last line is the nearest proxy's.
        for line in req.headers().get_all(self.header_name()).iter().rev() {
            let Ok(line) = line.to_str() else {
                return Some(nearest);
            };
            for entry in line.rsplit(',') {
                hops += 1;
                if hops > MAX_HOPS {
                    return Some(nearest);
                }
                let parsed = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry),
                };
                // A hop that names no address (`unknown`, garbage): the chain is broken
                // there; the nearest hop we could read is who we know sent the request.
                let Some(ip) = parsed else {
                    return Some(nearest);
                };
                let ip = canonical(ip);
                if !self.trusts(ip) {
                    return Some(ip);
                }
                nearest = ip;
            }
        }
        // Every hop is a trusted proxy: the furthest one is the client.
        Some(nearest)
    }

    fn header_name(&self) -> HeaderName {
        match self.header {
            ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => FORWARDED,
        }
    }
}

/// An `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, _port) = rest.split_once(']')?;
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.60;proto=http;by=203.0.113.43`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(peer: &str, header: &str, lines: &[&str]) -> Request<()> {
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        for line in lines {
            req.headers_mut()
                .append(HeaderName::try_from(header).unwrap(), line.parse().unwrap());
        }
        req
    }

    fn proxies(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::parse(nets, header).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let p = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let r = req("203.0.113.9:5000", "x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(p.client_ip(&r), ip("203.0.113.9"));
        // No trusted proxies at all: the peer, always.
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(&r), ip("203.0.113.9"));
        let mut bare = Request::get("/").body(()).unwrap();
        assert_eq!(none.client_ip(&bare), None);
        bare.extensions_mut()
            .insert("[::ffff:192.0.2.1]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(
            none.client_ip(&bare),
            ip("192.0.2.1"),
            "mapped peers are IPv4"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "fd00::/8"], ForwardedHeader::XForwardedFor);
        // The client forged the left-most entry; the proxy appended what it saw.
        let r = req("10.0.0.2:80", "x-forwarded-for", &["6.6.6.6, 198.51.100.7"]);
        assert_eq!(p.client_ip(&r), ip("198.51.100.7"));
        // Two proxies, two header lines, ports and brackets.
        let r = req(
            "10.0.0.2:80",
            "x-forwarded-for",
            &["6.6.6.6, [2001:db8::5]:443", "10.1.1.1:9000"],
        );
        assert_eq!(p.client_ip(&r), ip("2001:db8::5"));
        let r = req("[fd00::1]:80", "x-forwarded-for", &["::ffff:198.51.100.8"]);
        assert_eq!(p.client_ip(&r), ip("198.51.100.8"));
        // Every hop trusted: the furthest.
        let r = req("10.0.0.2:80", "x-forwarded-for", &["10.9.9.9, 10.0.0.3"]);
        assert_eq!(p.client_ip(&r), ip("10.9.9.9"));
        // A broken hop: the nearest readable one.
        let r = req(
            "10.0.0.2:80",
            "x-forwarded-for",
            &["1.2.3.4, unknown, 10.0.0.3"],
        );
        assert_eq!(p.client_ip(&r), ip("10.0.0.3"));
        // No header: the proxy itself.
        let r = req("10.0.0.2:80", "x-forwarded-for", &[]);
        assert_eq!(p.client_ip(&r), ip("10.0.0.2"));
    }

    #[test]
    fn only_the_header_the_proxies_write_is_read() {
        let xff = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let fwd = proxies(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let r = req(
            "10.0.0.2:80",
            "forwarded",
            &["for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, For=10.0.0.9"],
        );
        assert_eq!(fwd.client_ip(&r), ip("2001:db8::7"));
        // A forged Forwarded through a proxy that writes X-Forwarded-For changes nothing.
        assert_eq!(xff.client_ip(&r), ip("10.0.0.2"));
        let r = req("10.0.0.2:80", "forwarded", &["for=unknown;proto=http"]);
        assert_eq!(fwd.client_ip(&r), ip("10.0.0.2"));
    }

    #[test]
    fn a_long_chain_is_not_walked_past_the_bound() {
        let p = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let chain = vec!["10.0.0.1"; 1000].join(",");
        let r = req(
            "10.0.0.2:80",
            "x-forwarded-for",
            &[&format!("1.2.3.4,{chain}")],
        );
        assert_eq!(p.client_ip(&r), ip("10.0.0.1"));
    }

    #[test]
    fn ip_networks_match_by_prefix() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let any = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("1.2.3.4".parse().unwrap()));
        assert!(IpNet::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(IpNet::parse("nonsense").is_none());
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        // A network written IPv4-mapped matches the peers it names, however they arrive.
        let mapped = IpNet::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.1.2.3".parse().unwrap()));
        assert!(mapped.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!mapped.contains("11.1.2.3".parse().unwrap()));
        let one = IpNet::parse("::ffff:192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
    }
}
