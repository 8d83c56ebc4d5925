//! The edge in front of the WebSocket listener: which peers are trusted proxies, and whether
//! they speak the PROXY protocol. Read from the binary's `[listen]` section (`trusted_proxies`,
//! `proxy_protocol`) and handed to the data plane with its `Config`.

use ipnet::IpNet;

use super::ConfigProblem;

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Peers whose `X-Forwarded-For` and PROXY header are believed (CIDRs; an address alone is
    /// its /32 or /128). Empty: none, so `sourceIp` is always the TCP peer.
    pub trusted_proxies: Vec<IpNet>,
    /// The WebSocket listener expects a PROXY v1/v2 header from trusted peers.
    pub proxy_protocol: bool,
}

impl EdgeConfig {
    /// Builds it from `[listen]`'s values, recording a problem per bad entry (`key` names the
    /// list, e.g. `listen.trusted_proxies`).
    pub fn parse(
        key: &str,
        trusted_proxies: &[String],
        proxy_protocol: bool,
        problems: &mut Vec<ConfigProblem>,
    ) -> EdgeConfig {
        let mut nets = Vec::new();
        for (i, text) in trusted_proxies.iter().enumerate() {
            let parsed = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net.trunc()),
                Err(_) => problems.push(ConfigProblem {
                    key: format!("{key}[{i}]"),
                    message: format!("not an address or CIDR block: {text:?}"),
                }),
            }
        }
        if proxy_protocol && trusted_proxies.is_empty() {
            problems.push(ConfigProblem {
                key: "listen.proxy_protocol".into(),
                message:
                    "the PROXY header is honoured only from listen.trusted_proxies, which is empty"
                        .into(),
            });
        }
        EdgeConfig {
            trusted_proxies: nets,
            proxy_protocol,
        }
    }

    /// True when `ip` is a trusted proxy.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (dual-stack listeners report them).
pub fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}
