//! `EgressPolicy`: the pure SSRF decision, which (scheme, host, address, port) a URL job may reach.
//!
//! Nothing here connects or resolves; `egress::resolve` feeds it the resolved addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::settings::{AllowRule, EgressSettings};

/// Why a destination was refused; `label()` is the metric label (a small fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Scheme,
    Port,
    /// Not on the allow list while `allow_public` is off (or a deny-all policy).
    NotAllowed,
    Loopback,
    Private,
    LinkLocal,
    /// RFC 6598 shared address space (carrier-grade NAT).
    Shared,
    Multicast,
    Unspecified,
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment, tunnel and unallocated ranges.
    Reserved,
    /// A cloud instance metadata endpoint (169.254.169.254, fd00:ec2::254, ...).
    Metadata,
    /// A proxy request that could not be parsed.
    Malformed,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Scheme => "scheme",
            Self::Port => "port",
            Self::NotAllowed => "not_allowed",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::Shared => "shared",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Metadata => "metadata",
            Self::Malformed => "malformed",
        }
    }

    /// The words used in messages ("a private address").
    fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Shared => "shared (cgnat)",
            Self::Multicast => "multicast",
            Self::Unspecified => "unspecified",
            Self::Broadcast => "broadcast",
            Self::Reserved => "reserved",
            Self::Metadata => "cloud metadata",
            Self::Scheme | Self::Port | Self::NotAllowed | Self::Malformed => "refused",
        }
    }
}

/// A refused destination: what was asked for (`subject`: a host, an address or a scheme) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub subject: String,
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Refusal {
    fn new(reason: Reason, subject: impl Into<String>, ip: Option<IpAddr>, port: u16) -> Self {
        Self {
            reason,
            subject: subject.into(),
            ip,
            port,
        }
    }

    /// Names the host the refused address came from ("example.test resolves to ...").
    pub fn for_host(mut self, host: &str) -> Self {
        host.clone_into(&mut self.subject);
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = &self.subject;
        match self.reason {
            Reason::Scheme => write!(formatter, "scheme {subject} is not allowed (only http and https)"),
            Reason::Port => write!(formatter, "{subject}: port {} is not allowed", self.port),
            Reason::NotAllowed => write!(
                formatter,
                "{subject}:{} is not on the egress allow list",
                self.port
            ),
            Reason::Malformed => write!(formatter, "malformed proxy request: {subject}"),
            reason => match self.ip {
                Some(ip) if *subject != ip.to_string() && *subject != format!("[{ip}]") => write!(
                    formatter,
                    "{subject} resolves to a {} address ({ip})",
                    reason.describe()
                ),
                _ => write!(formatter, "{subject} is a {} address", reason.describe()),
            },
        }
    }
}

/// The policy built from `EgressSettings`; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    allowed_ports: Vec<u16>,
    allow: Vec<AllowRule>,
    allow_hosts: Vec<String>,
    allow_public: bool,
}

impl EgressPolicy {
    pub fn new(settings: &EgressSettings) -> Self {
        Self {
            allowed_ports: settings.allowed_ports.clone(),
            allow: settings.allow.clone(),
            allow_hosts: settings
                .allow_hosts
                .iter()
                .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            allow_public: settings.allow_public,
        }
    }

    /// Refuses everything (raw HTML jobs: no network at all).
    pub fn deny_all() -> Self {
        Self {
            allowed_ports: Vec::new(),
            allow: Vec::new(),
            allow_hosts: Vec::new(),
            allow_public: false,
        }
    }

    /// Only `http` and `https` are fetched.
    pub fn check_scheme(&self, scheme: &str) -> Result<(), Refusal> {
        if matches!(scheme, "http" | "https") {
            Ok(())
        } else {
            Err(Refusal::new(Reason::Scheme, scheme, None, 0))
        }
    }

    /// The decision for a host name before resolving it: `Ok(true)` when the name is
    /// allow-listed (its addresses are then not judged), `Ok(false)` when its addresses must be
    /// checked. `localhost` names are loopback by definition (RFC 6761 §6.3), without asking DNS.
    pub fn check_name(&self, name: &str, port: u16) -> Result<bool, Refusal> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.allow_hosts.contains(&name) {
            return self.check_port(&name, port).map(|()| true);
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(Refusal::new(Reason::Loopback, name, None, port));
        }
        if !self.allow_public {
            return Err(Refusal::new(Reason::NotAllowed, name, None, port));
        }
        Ok(false)
    }

    /// Every address a name resolved to must pass: one private answer among public ones
    /// refuses the name (a DNS-rebinding answer cannot slip through on the second try).
    pub fn check_resolved(&self, name: &str, port: u16, addresses: &[IpAddr]) -> Result<(), Refusal> {
        if self.check_name(name, port)? {
            return Ok(());
        }
        for ip in addresses {
            self.check_addr(*ip, port)
                .map_err(|refusal| refusal.for_host(name))?;
        }
        Ok(())
    }

    /// The decision for one address and port: allow rules first, then the refused ranges,
    /// then the allow-public switch and the port list.
    pub fn check_addr(&self, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let opened = self
            .allow
            .iter()
            .any(|rule| rule.cidr.contains(ip) && (rule.ports.is_empty() || rule.ports.contains(&port)));
        if opened {
            return Ok(());
        }
        if let Some(reason) = classify(ip) {
            return Err(Refusal::new(reason, ip.to_string(), Some(ip), port));
        }
        if !self.allow_public {
            return Err(Refusal::new(Reason::NotAllowed, ip.to_string(), Some(ip), port));
        }
        self.check_port(&ip.to_string(), port)
    }

    fn check_port(&self, subject: &str, port: u16) -> Result<(), Refusal> {
        if self.allowed_ports.contains(&port) {
            Ok(())
        } else {
            Err(Refusal::new(Reason::Port, subject, None, port))
        }
    }
}

/// Cloud metadata endpoints, named in refusals: AWS/GCP/Azure/OpenStack, AWS ECS task
/// metadata, Alibaba Cloud, and AWS's IPv6 endpoint (inside the ULA range, RFC 4193).
const METADATA: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// The refused category of an address, or `None` for a public unicast one.
pub fn classify(ip: IpAddr) -> Option<Reason> {
    if METADATA.contains(&ip) {
        return Some(Reason::Metadata);
    }
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    ip.to_bits() & mask == u32::from_be_bytes(network) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Reason> {
    Some(if ip.is_unspecified() || in_v4(ip, [0, 0, 0, 0], 8) {
        // 0.0.0.0/8 "this network" (RFC 1122 §3.2.1.3): Linux connects 0.0.0.0 to the local host.
        Reason::Unspecified
    } else if ip.is_loopback() {
        Reason::Loopback // 127.0.0.0/8, RFC 1122
    } else if ip.is_private() {
        Reason::Private // 10/8, 172.16/12, 192.168/16, RFC 1918
    } else if ip.is_link_local() {
        Reason::LinkLocal // 169.254/16, RFC 3927
    } else if in_v4(ip, [100, 64, 0, 0], 10) {
        Reason::Shared // 100.64/10, RFC 6598
    } else if ip.is_multicast() {
        Reason::Multicast // 224/4, RFC 5771
    } else if ip.is_broadcast() {
        Reason::Broadcast // 255.255.255.255, RFC 919
    } else if ip.is_documentation() // 192.0.2/24, 198.51.100/24, 203.0.113/24, RFC 5737
        || in_v4(ip, [192, 0, 0, 0], 24) // IETF protocol assignments, RFC 6890
        || in_v4(ip, [198, 18, 0, 0], 15) // benchmarking, RFC 2544
        || in_v4(ip, [192, 88, 99, 0], 24) // 6to4 relay anycast, RFC 7526
        || in_v4(ip, [240, 0, 0, 0], 4)
    // reserved for future use, RFC 1112
    {
        Reason::Reserved
    } else {
        return None;
    })
}

fn in_v6(ip: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    ip.to_bits() & mask == Ipv6Addr::from(network).to_bits() & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    // Truncation keeps exactly the low 32 bits, which is the point.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the low 32 bits are the embedded address"
    )]
    Ipv4Addr::from_bits(ip.to_bits() as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Reason> {
    if ip.is_unspecified() {
        return Some(Reason::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Reason::Loopback);
    }
    // IPv4-mapped ::ffff:0:0/96 (RFC 4291 §2.5.5.2): judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify(IpAddr::V4(v4));
    }
    // IPv4-compatible ::/96 (deprecated, RFC 4291 §2.5.5.1): the embedded address's category, else reserved.
    if in_v6(ip, [0; 8], 96) {
        return Some(classify(IpAddr::V4(low_v4(ip))).unwrap_or(Reason::Reserved));
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): judged as the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify(IpAddr::V4(low_v4(ip)));
    }
    // 6to4 2002::/16 (RFC 3056): the IPv4 address sits in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let segments = ip.segments();
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return classify(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    }
    Some(if ip.is_multicast() {
        Reason::Multicast // ff00::/8, RFC 4291
    } else if in_v6(ip, [0xfe80, 0, 0, 0, 0, 0, 0, 0], 10) {
        Reason::LinkLocal // fe80::/10, RFC 4291
    } else if in_v6(ip, [0xfc00, 0, 0, 0, 0, 0, 0, 0], 7) // unique local, RFC 4193
        || in_v6(ip, [0xfec0, 0, 0, 0, 0, 0, 0, 0], 10)
    // site-local, deprecated by RFC 3879
    {
        Reason::Private
    } else if in_v6(ip, [0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48) // local-use NAT64, RFC 8215
        || in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 32) // Teredo, RFC 4380
        || in_v6(ip, [0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48) // benchmarking, RFC 5180
        || in_v6(ip, [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32) // documentation, RFC 3849
        || in_v6(ip, [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20) // documentation, RFC 9637
        || in_v6(ip, [0x100, 0, 0, 0, 0, 0, 0, 0], 64) // discard-only, RFC 6666
        || !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
    // outside global unicast 2000::/3 (RFC 4291 §2.4): unallocated
    {
        Reason::Reserved
    } else {
        return None;
    })
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
