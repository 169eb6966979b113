//! Unit tests of the SSRF decision: every refused range, the allow list, and DNS answers; nothing connects.
#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;

fn default_policy() -> EgressPolicy {
    EgressPolicy::new(&EgressSettings::default())
}

fn reason(address: &str, port: u16) -> Option<Reason> {
    default_policy()
        .check_addr(address.parse().unwrap(), port)
        .err()
        .map(|refusal| refusal.reason)
}

#[test]
fn private_and_special_addresses_are_refused() {
    let cases = [
        ("10.0.0.1", Reason::Private),
        ("192.168.1.1", Reason::Private),
        ("172.16.0.1", Reason::Private),
        ("172.31.255.255", Reason::Private),
        ("100.64.0.1", Reason::Shared),
        ("100.127.255.254", Reason::Shared),
        ("169.254.169.254", Reason::Metadata),
        ("169.254.170.2", Reason::Metadata),
        ("100.100.100.200", Reason::Metadata),
        ("fd00:ec2::254", Reason::Metadata),
        ("169.254.1.1", Reason::LinkLocal),
        ("fe80::1", Reason::LinkLocal),
        ("127.0.0.1", Reason::Loopback),
        ("127.0.0.2", Reason::Loopback),
        ("::1", Reason::Loopback),
        ("0.0.0.0", Reason::Unspecified),
        ("0.1.2.3", Reason::Unspecified),
        ("::", Reason::Unspecified),
        ("224.0.0.1", Reason::Multicast),
        ("239.255.255.250", Reason::Multicast),
        ("ff02::1", Reason::Multicast),
        ("ff05::1:3", Reason::Multicast),
        ("255.255.255.255", Reason::Broadcast),
        ("192.0.2.1", Reason::Reserved),
        ("198.51.100.7", Reason::Reserved),
        ("203.0.113.9", Reason::Reserved),
        ("198.18.0.1", Reason::Reserved),
        ("192.0.0.192", Reason::Reserved),
        ("240.0.0.1", Reason::Reserved),
        ("2001:db8::1", Reason::Reserved),
        ("2001::1", Reason::Reserved),
        ("100::1", Reason::Reserved),
        ("fd12:3456::1", Reason::Private),
        ("fc00::1", Reason::Private),
        ("fec0::1", Reason::Private),
        // IPv4 embedded in IPv6: mapped, compatible, NAT64, 6to4.
        ("::ffff:127.0.0.1", Reason::Loopback),
        ("::ffff:10.0.0.1", Reason::Private),
        ("::ffff:169.254.169.254", Reason::Metadata),
        ("::127.0.0.1", Reason::Loopback),
        ("::8.8.8.8", Reason::Reserved),
        ("64:ff9b::10.0.0.1", Reason::Private),
        ("64:ff9b::169.254.169.254", Reason::Metadata),
        ("64:ff9b:1::1", Reason::Reserved),
        ("2002:7f00:1::", Reason::Loopback),
        ("2002:c0a8:101::1", Reason::Private),
    ];
    for (address, expected) in cases {
        assert_eq!(reason(address, 80), Some(expected), "{address}");
    }
}

#[test]
fn public_addresses_pass_on_allowed_ports_only() {
    for address in [
        "93.184.216.34",
        "1.1.1.1",
        "2606:4700::1111",
        "64:ff9b::5db8:d822",
        "2002:5db8:d822::1",
    ] {
        assert_eq!(reason(address, 443), None, "{address}");
        assert_eq!(reason(address, 80), None, "{address}");
        assert_eq!(reason(address, 22), Some(Reason::Port), "{address}");
    }
    assert_eq!(reason("1.1.1.1", 8080), None);
    assert_eq!(reason("1.1.1.1", 8443), None);
    assert_eq!(reason("1.1.1.1", 6379), Some(Reason::Port));
}

#[test]
fn allow_rules_open_exactly_their_range_and_ports() {
    let policy = EgressPolicy::new(&EgressSettings {
        allow: vec![AllowRule {
            cidr: "127.0.0.1/32".parse().unwrap(),
            ports: vec![41234],
        }],
        allow_public: false,
        ..EgressSettings::default()
    });
    let check = |address: &str, port| {
        policy
            .check_addr(address.parse().unwrap(), port)
            .map_err(|r| r.reason)
    };
    assert_eq!(check("127.0.0.1", 41234), Ok(()));
    assert_eq!(check("127.0.0.1", 41235), Err(Reason::Loopback));
    assert_eq!(check("127.0.0.1", 80), Err(Reason::Loopback));
    assert_eq!(check("127.0.0.2", 41234), Err(Reason::Loopback));
    assert_eq!(check("::1", 41234), Err(Reason::Loopback));
    // The mapped form of an allowed IPv4 address is not the same rule.
    assert_eq!(check("::ffff:127.0.0.1", 41234), Err(Reason::Loopback));
    // Without allow_public, public addresses are refused too.
    assert_eq!(check("1.1.1.1", 443), Err(Reason::NotAllowed));

    let any_port = EgressPolicy::new(&EgressSettings {
        allow: vec![AllowRule {
            cidr: "10.20.0.0/16".parse().unwrap(),
            ports: Vec::new(),
        }],
        ..EgressSettings::default()
    });
    assert!(any_port.check_addr("10.20.3.4".parse().unwrap(), 9000).is_ok());
    assert!(any_port.check_addr("10.21.0.1".parse().unwrap(), 80).is_err());
}

#[test]
fn names_are_refused_when_any_answer_is_refused() {
    let policy = default_policy();
    let public: IpAddr = "93.184.216.34".parse().unwrap();
    let private: IpAddr = "10.0.0.1".parse().unwrap();
    assert!(policy.check_resolved("quiz.example", 443, &[public]).is_ok());
    let refusal = policy
        .check_resolved("quiz.example", 443, &[public, private])
        .unwrap_err();
    assert_eq!(refusal.reason, Reason::Private);
    assert_eq!(
        refusal.to_string(),
        "quiz.example resolves to a private address (10.0.0.1)"
    );
    let metadata = policy
        .check_resolved("metadata.internal", 80, &["169.254.169.254".parse().unwrap()])
        .unwrap_err();
    assert_eq!(
        metadata.to_string(),
        "metadata.internal resolves to a cloud metadata address (169.254.169.254)"
    );
}

#[test]
fn localhost_names_are_loopback_without_dns_and_allow_hosts_override() {
    let policy = default_policy();
    assert_eq!(
        policy.check_name("localhost", 80).unwrap_err().reason,
        Reason::Loopback
    );
    assert_eq!(
        policy.check_name("LOCALHOST.", 80).unwrap_err().reason,
        Reason::Loopback
    );
    assert_eq!(
        policy.check_name("app.localhost", 80).unwrap_err().reason,
        Reason::Loopback
    );
    assert_eq!(policy.check_name("quiz.example", 80), Ok(false));

    let listed = EgressPolicy::new(&EgressSettings {
        allow_hosts: vec!["Intranet.Quiz".to_owned()],
        allow_public: false,
        ..EgressSettings::default()
    });
    assert!(
        listed
            .check_resolved("intranet.quiz", 443, &["10.1.2.3".parse().unwrap()])
            .is_ok()
    );
    assert_eq!(
        listed.check_name("intranet.quiz", 22).unwrap_err().reason,
        Reason::Port
    );
    assert_eq!(
        listed.check_name("other.quiz", 443).unwrap_err().reason,
        Reason::NotAllowed
    );
}

#[test]
fn only_http_and_https_and_deny_all_refuses_everything() {
    let policy = default_policy();
    assert!(policy.check_scheme("http").is_ok());
    assert!(policy.check_scheme("https").is_ok());
    for scheme in ["file", "ftp", "gopher", "data", "chrome", "ws"] {
        assert_eq!(policy.check_scheme(scheme).unwrap_err().reason, Reason::Scheme);
    }
    let deny = EgressPolicy::deny_all();
    assert!(deny.check_addr("1.1.1.1".parse().unwrap(), 443).is_err());
    assert!(deny.check_name("quiz.example", 443).is_err());
}

#[test]
fn refusal_messages_name_the_address() {
    let refusal = default_policy()
        .check_addr("127.0.0.2".parse().unwrap(), 80)
        .unwrap_err();
    assert_eq!(refusal.to_string(), "127.0.0.2 is a loopback address");
    let refusal = default_policy()
        .check_addr("fd00:ec2::254".parse().unwrap(), 80)
        .unwrap_err();
    assert_eq!(refusal.to_string(), "fd00:ec2::254 is a cloud metadata address");
    assert_eq!(refusal.reason.label(), "metadata");
}
