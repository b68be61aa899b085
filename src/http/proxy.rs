//! Who a request came from when it passed through proxies: `X-Forwarded-For` is believed only
//! from peers in `server.trusted_proxies`, read from the right (the nearest hop first), and the
//! first address that is not a trusted proxy is the caller.

use std::net::IpAddr;
use std::sync::Arc;

pub use crate::settings::proxies::{parse_range, IpRange};

/// An address as the `requester` text (per-caller limits, the inference tables), written on
/// the stack and copied once into its `Arc`: `to_string` grew a `String` and copied it again,
/// two allocations and a reallocation on every request.
pub fn address_text(ip: IpAddr) -> Arc<str> {
    use std::io::Write;
    // An address prints as at most 39 bytes (eight full IPv6 groups).
    let mut buf = [0u8; 48];
    let mut out = &mut buf[..];
    let room = out.len();
    let len = write!(out, "{ip}").ok().map(|()| room - out.len());
    match len.and_then(|len| std::str::from_utf8(&buf[..len]).ok()) {
        Some(text) => Arc::from(text),
        None => ip.to_string().into(),
    }
}

/// The caller's address: the peer, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not one (what lies beyond it was written by the caller and
/// proves nothing). `forwarded_for` holds the header's lines in arrival order: a proxy may add
/// a line of its own instead of appending to the caller's.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpRange]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut caller = peer;
    // Bounded by actix's header size limit; one split per hop.
    for hop in forwarded_for.iter().rev().flat_map(|line| line.rsplit(',')) {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip) => caller = ip,
            Some(ip) => return ip,
            // A hop that is not an address ends what can be believed.
            None => return caller,
        }
    }
    caller
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
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
        // IPv4-mapped ranges are the IPv4 ranges they map, never everything.
        let mapped = parse_range("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains(ip("10.9.9.9")) && !mapped.contains(ip("11.0.0.1")));
        let one = parse_range("::ffff:10.0.0.5").unwrap();
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.6")));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let trusted = vec![parse_range("10.0.0.0/8").unwrap()];
        let xff = &["203.0.113.7, 10.0.0.9"][..];
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), xff, &trusted),
            ip("198.51.100.1")
        );
        // Through two trusted hops, the first untrusted address from the right.
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &trusted), ip("203.0.113.7"));
        // A spoofed left part does not win over the nearest untrusted hop.
        let spoofed = &["1.1.1.1, 203.0.113.7, 10.0.0.9"][..];
        assert_eq!(
            client_ip(ip("10.0.0.2"), spoofed, &trusted),
            ip("203.0.113.7")
        );
        // A proxy's own line comes last; the caller's own line first proves nothing.
        let lines = &["1.1.1.1", "203.0.113.7"][..];
        assert_eq!(
            client_ip(ip("10.0.0.2"), lines, &trusted),
            ip("203.0.113.7")
        );
        // Hops with ports.
        let ports = &["203.0.113.7:5678, [2001:db8::1]:443"][..];
        assert_eq!(
            client_ip(ip("10.0.0.2"), ports, &trusted),
            ip("2001:db8::1")
        );
        // No header, or garbage: the nearest believable address.
        assert_eq!(client_ip(ip("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["junk"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &["10.0.0.3"], &trusted),
            ip("10.0.0.3")
        );
        // No trusted proxies: the peer, always.
        assert_eq!(client_ip(ip("10.0.0.2"), xff, &[]), ip("10.0.0.2"));
    }

    #[test]
    fn addresses_print_whole_the_longest_included() {
        for text in [
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(&*address_text(ip), ip.to_string(), "{text}");
        }
    }
}
