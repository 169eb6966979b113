//! `Target`: the host and port a request asks for, normalized by the `url` crate (so
//! `2130706433`, `0x7f.0.0.1` and `127.1` are all 127.0.0.1), and its resolution under the policy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

use super::log::{Blocked, BlockedKind};
use super::policy::EgressPolicy;

/// How long one name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A destination: a normalized host and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host<String>,
    pub port: u16,
}

impl Target {
    /// The host and port of an http(s) URL (the scheme's default port when none is given).
    pub fn from_url(url: &Url) -> Option<Self> {
        Some(Self {
            host: url.host()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    /// The `host:port` of a `CONNECT` request; user info, paths and the like are not accepted.
    pub fn from_authority(authority: &str) -> Option<Self> {
        if authority.is_empty() || authority.contains(['@', '/', '?', '#', '\\']) {
            return None;
        }
        // CONNECT must name its port; `host` alone would silently mean 443.
        let (_, port) = authority.rsplit_once(':')?;
        if port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Self::from_url(&Url::parse(&format!("https://{authority}/")).ok()?)
    }

    /// `host:port` as the url crate prints it (`[::1]:80`), the key refusals are looked up by.
    pub fn key(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A URL job's first check, before the browser sees the URL: the scheme, then the host as the
/// proxy will judge it. Names are resolved here too (the proxy resolves again and re-checks).
pub async fn check_url(policy: &EgressPolicy, url: &Url) -> Result<(), Blocked> {
    let target = Target::from_url(url);
    if let Err(refusal) = policy.check_scheme(url.scheme()) {
        let key = target.map_or_else(|| url.to_string(), |target| target.key());
        return Err(Blocked::new(key, BlockedKind::Refused(refusal)));
    }
    let Some(target) = target else {
        return Err(Blocked::new(
            url.to_string(),
            BlockedKind::Unreachable("the url has no host".to_owned()),
        ));
    };
    resolve(policy, &target).await.map(drop)
}

/// Resolves `target` once and checks every address: refused when any address is refused.
/// The addresses returned are the only ones the caller may connect to.
pub async fn resolve(policy: &EgressPolicy, target: &Target) -> Result<Vec<SocketAddr>, Blocked> {
    let refused = |refusal| Blocked::new(target.key(), BlockedKind::Refused(refusal));
    let port = target.port;
    match &target.host {
        Host::Ipv4(ip) => {
            let ip = IpAddr::V4(*ip);
            policy.check_addr(ip, port).map_err(refused)?;
            Ok(vec![SocketAddr::new(ip, port)])
        }
        Host::Ipv6(ip) => {
            let ip = IpAddr::V6(*ip);
            policy.check_addr(ip, port).map_err(refused)?;
            Ok(vec![SocketAddr::new(ip, port)])
        }
        Host::Domain(name) => {
            // Refusals that need no DNS answer come first: nothing is looked up for them.
            policy.check_name(name, port).map_err(refused)?;
            let unreachable = |reason: String| Blocked::new(target.key(), BlockedKind::Unreachable(reason));
            let answers =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), port)))
                    .await
                    .map_err(|_| unreachable(format!("resolving {name} timed out")))?
                    .map_err(|error| unreachable(format!("cannot resolve {name}: {error}")))?;
            let addresses: Vec<SocketAddr> = answers.collect();
            if addresses.is_empty() {
                return Err(unreachable(format!("{name} has no addresses")));
            }
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            policy.check_resolved(name, port, &ips).map_err(refused)?;
            Ok(addresses)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::egress::Reason;
    use crate::settings::EgressSettings;

    fn target(url: &str) -> Target {
        Target::from_url(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn encoded_addresses_are_normalized() {
        assert_eq!(target("http://2130706433:81/").key(), "127.0.0.1:81");
        assert_eq!(target("http://0x7f.0.0.1/").key(), "127.0.0.1:80");
        assert_eq!(target("http://127.1/").key(), "127.0.0.1:80");
        assert_eq!(target("http://0177.0.0.1/").key(), "127.0.0.1:80");
        assert_eq!(target("https://[::ffff:127.0.0.1]/").key(), "[::ffff:7f00:1]:443");
        assert_eq!(target("http://LocalHost./").key(), "localhost.:80");
    }

    #[test]
    fn connect_authorities_need_a_port_and_nothing_else() {
        assert_eq!(Target::from_authority("[::1]:8443").unwrap().key(), "[::1]:8443");
        assert_eq!(
            Target::from_authority("0x7f.1:443").unwrap().key(),
            "127.0.0.1:443"
        );
        assert!(Target::from_authority("example.test").is_none());
        assert!(Target::from_authority("user@10.0.0.1:443").is_none());
        assert!(Target::from_authority("a.test:443/x").is_none());
    }

    #[tokio::test]
    async fn literal_and_localhost_urls_are_refused_without_dns() {
        let policy = EgressPolicy::new(&EgressSettings::default());
        for (url, reason) in [
            ("http://2130706433/", Reason::Loopback),
            ("http://0x7f.0.0.1/", Reason::Loopback),
            ("http://[::ffff:127.0.0.1]/", Reason::Loopback),
            ("http://localhost/", Reason::Loopback),
            ("http://169.254.169.254/latest/meta-data/", Reason::Metadata),
            ("http://[fd00:ec2::254]/", Reason::Metadata),
            ("http://10.0.0.1/", Reason::Private),
            ("file:///etc/passwd", Reason::Scheme),
            ("ftp://1.1.1.1/", Reason::Scheme),
            ("http://1.1.1.1:22/", Reason::Port),
        ] {
            let blocked = check_url(&policy, &Url::parse(url).unwrap()).await.unwrap_err();
            match blocked.kind {
                BlockedKind::Refused(refusal) => assert_eq!(refusal.reason, reason, "{url}"),
                BlockedKind::Unreachable(other) => panic!("{url}: {other}"),
            }
        }
    }
}
