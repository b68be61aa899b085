//! Who a request came from when it passed through proxies: `X-Forwarded-For` is believed only
//! from peers in `server.trusted_proxies`, read from the right (the nearest hop first), and the
//! first address that is not a trusted proxy is the caller.

use std::net::IpAddr;

/// An address range: an address and the length of its network prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (the whole length).
pub fn parse_range(text: &str) -> Option<IpRange> {
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (text.trim().parse::<IpAddr>().ok()?, None),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(width);
    (prefix <= width).then_some(IpRange { addr, prefix })
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                // An IPv4 peer seen through an IPv6 socket is the IPv4 address.
                IpAddr::V6(v) => match v.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v), 128),
                },
            }
        };
        let (net, width) = bits(self.addr);
        let (host, host_width) = bits(ip);
        if width != host_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (host >> shift)
    }
}

/// The caller's address: the peer, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not one (the rest of the header was written by the caller and
/// proves nothing).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut caller = peer;
    // Bounded: the header is bounded by actix's header size limit, and each hop is one split.
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => caller = ip,
            Ok(ip) => return ip,
            // A hop that is not an address ends what can be believed.
            Err(_) => return caller,
        }
    }
    caller
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = parse_range("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")));
        let one = parse_range("192.168.1.5").unwrap();
        assert!(one.contains(ip("192.168.1.5")) && !one.contains(ip("192.168.1.6")));
        let all = parse_range("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::2")));
        let v6 = parse_range("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "nope", "10.0.0.0/x"] {
            assert!(parse_range(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = vec![parse_range("10.0.0.0/8").unwrap()];
        let xff = Some("203.0.113.7, 10.0.0.9");
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), xff, &trusted),
            ip("198.51.100.1")
        );
        // Through two trusted hops, the first untrusted address from the right.
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &trusted), ip("203.0.113.7"));
        // A spoofed left part does not win over the nearest untrusted hop.
        let spoofed = Some("1.1.1.1, 203.0.113.7, 10.0.0.9");
        assert_eq!(
            client_ip(ip("10.0.0.2"), spoofed, &trusted),
            ip("203.0.113.7")
        );
        // No header, or garbage: the nearest believable address.
        assert_eq!(client_ip(ip("10.0.0.2"), None, &trusted), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("junk"), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("10.0.0.3"), &trusted),
            ip("10.0.0.3")
        );
        // No trusted proxies: the peer, always.
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &[]), ip("10.0.0.2"));
    }
}
