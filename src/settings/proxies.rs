//! `server.trusted_proxies`: address ranges whose `X-Forwarded-For` is believed.

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
    if prefix > width {
        return None;
    }
    // `::ffff:10.0.0.0/104` is the IPv4 range 10.0.0.0/8, as peers are compared.
    if let IpAddr::V6(v6) = addr {
        if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
            return Some(IpRange {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            });
        }
    }
    Some(IpRange { addr, prefix })
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
        let shift = width.saturating_sub(u32::from(self.prefix));
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (host >> shift)
    }
}
