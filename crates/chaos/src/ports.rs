//! Free loopback ports for the private brokers and the services, below the kernel's ephemeral
//! range: a port from that range is free now but may be taken a moment later by any outbound
//! connection on the machine (a benchmark opening 10,000 WebSockets did exactly that to the
//! private RabbitMQ's port between the pick and the broker's start).

use std::net::TcpListener;

use anyhow::{Context, Result, bail};
use rand::Rng;

/// Where the picks come from when the ephemeral range cannot be read: Linux's default
/// ephemeral range starts at 32768.
const DEFAULT_EPHEMERAL_LOW: u16 = 32768;
/// The lowest port picked: well above the registered services people run on a dev machine.
const LOWEST: u16 = 20000;

/// `n` distinct ports nothing listens on, from [`LOWEST`] up to the ephemeral range.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW);
    let high = if ephemeral_low > LOWEST + 1000 {
        ephemeral_low
    } else {
        u16::MAX
    };
    let mut rng = rand::rng();
    // Hold every listener until all are picked, so no port is handed out twice.
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    for _ in 0..n * 50 {
        if held.len() == n {
            break;
        }
        let port = rng.random_range(LOWEST..high);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    if held.len() < n {
        bail!(
            "found only {} free ports of {n} between {LOWEST} and {high}",
            held.len()
        );
    }
    held.iter()
        .map(|listener| Ok(listener.local_addr().context("reading a bound port")?.port()))
        .collect()
}

pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}
