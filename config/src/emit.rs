//! `Config::to_toml`: the effective configuration, every default written out,
//! in a form `from_str` reads back to an equal `Config`.

use std::fmt::{self, Write};
use std::net::IpAddr;

use crate::model::{Config, Interface, Traffic};

impl Config {
    /// The effective configuration as TOML. Keys holding identifiers
    /// (`pkey`, `qkey`, `guid`, `qpn`) are written in hex.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_toml(&mut out);
        out
    }

    fn write_toml(&self, out: &mut String) -> fmt::Result {
        let d = &self.dataplane;
        writeln!(out, "# Effective configuration: every default written out.")?;
        writeln!(out, "[dataplane]")?;
        writeln!(out, "lcores = {}", list(d.lcores.iter()))?;
        writeln!(out, "burst = {}", d.burst)?;
        writeln!(out, "tx_ring_size = {}", d.tx_ring_size)?;
        writeln!(out, "rx_ring_size = {}", d.rx_ring_size)?;
        writeln!(out, "mempool_size = {}", d.mempool_size)?;
        writeln!(out, "mempool_cache = {}", d.mempool_cache)?;
        writeln!(out, "buf_size = {}", d.buf_size)?;
        writeln!(out, "hugepages = {}", quote(d.hugepages.as_str()))?;

        let p = &self.provider;
        writeln!(out, "\n[provider]")?;
        writeln!(out, "kind = {}", quote(p.kind.as_str()))?;
        writeln!(out, "\n[provider.fabric]")?;
        writeln!(out, "ib_mtu = {}", p.fabric.ib_mtu)?;
        writeln!(out, "loss = {}", float(p.fabric.loss))?;
        writeln!(out, "reorder = {}", float(p.fabric.reorder))?;
        writeln!(out, "seed = {}", u64_literal(p.fabric.seed, false))?;
        writeln!(out, "\n[provider.rocev2]")?;
        writeln!(out, "port = {}", p.rocev2.port)?;
        writeln!(out, "multicast_loop = {}", p.rocev2.multicast_loop)?;
        writeln!(out, "gso = {}", p.rocev2.gso)?;
        writeln!(out, "gro = {}", p.rocev2.gro)?;
        writeln!(out, "ib_mtu = {}", p.rocev2.ib_mtu)?;
        let range = p
            .rocev2
            .ipv6_group_range
            .map_or(String::new(), |c| format!("{}/{}", c.addr, c.prefix));
        writeln!(out, "ipv6_group_range = {}", quote(&range))?;
        writeln!(out, "\n[provider.verbs]")?;
        writeln!(out, "device = {}", quote(&p.verbs.device))?;
        writeln!(out, "port = {}", p.verbs.port)?;
        writeln!(out, "gid_index = {}", p.verbs.gid_index)?;
        writeln!(out, "pkey_index = {}", p.verbs.pkey_index)?;

        for iface in &self.interfaces {
            write_interface(out, iface)?;
        }
        for flow in &self.traffic {
            write_traffic(out, flow)?;
        }

        let c = &self.control;
        writeln!(out, "\n[control]")?;
        writeln!(out, "join_timeout_ms = {}", c.join_timeout_ms)?;
        writeln!(out, "backoff_max_s = {}", c.backoff_max_s)?;
        writeln!(out, "sendonly_gc_s = {}", c.sendonly_gc_s)?;
        writeln!(out, "request_queue = {}", c.request_queue)?;
        writeln!(out, "neigh_queue = {}", c.neigh_queue)?;

        writeln!(out, "\n[run]")?;
        writeln!(out, "duration_s = {}", float(self.run.duration_s))?;
        writeln!(out, "stats_interval_ms = {}", self.run.stats_interval_ms)?;

        writeln!(out, "\n[log]")?;
        writeln!(out, "level = {}", quote(self.log.level.as_str()))?;

        writeln!(out, "\n[metrics]")?;
        match self.metrics.listen {
            Some(addr) => writeln!(out, "listen = {}", quote(&addr.to_string())),
            None => writeln!(out, "# listen = \"127.0.0.1:9464\" (off)"),
        }
    }
}

fn write_interface(out: &mut String, iface: &Interface) -> fmt::Result {
    writeln!(out, "\n[[interface]]")?;
    writeln!(out, "name = {}", quote(&iface.name))?;
    writeln!(out, "port = {}", iface.port)?;
    if let Some(parent) = &iface.parent {
        writeln!(out, "parent = {}", quote(parent))?;
    }
    writeln!(out, "lcore = {}", iface.lcore)?;
    writeln!(out, "queues = {}", iface.queues)?;
    writeln!(out, "pkey = 0x{:04X}", iface.pkey)?;
    writeln!(out, "qkey = 0x{:04X}", iface.qkey)?;
    writeln!(out, "mtu = {}", iface.mtu)?;
    writeln!(out, "guid = {}", u64_literal(iface.guid, true))?;
    if let Some(ip) = iface.local_ip {
        writeln!(out, "local_ip = {}", quote(&ip.to_string()))?;
    }
    let cidrs4 = iface
        .ipv4
        .iter()
        .map(|c| format!("{}/{}", c.addr, c.prefix));
    writeln!(out, "ipv4 = {}", quoted_list(cidrs4))?;
    let cidrs6 = iface
        .ipv6
        .iter()
        .map(|c| format!("{}/{}", c.addr, c.prefix));
    writeln!(out, "ipv6 = {}", quoted_list(cidrs6))?;
    writeln!(
        out,
        "groups = {}",
        quoted_list(iface.groups.iter().map(IpAddr::to_string))
    )?;
    writeln!(
        out,
        "sendonly = {}",
        quoted_list(iface.sendonly.iter().map(IpAddr::to_string))
    )?;
    if let Some(tun) = &iface.tun {
        writeln!(out, "tun = {{ name = {} }}", quote(&tun.name))?;
    }
    for n in &iface.neighbours {
        writeln!(out, "\n[[interface.neighbour]]")?;
        writeln!(out, "ip = {}", quote(&n.ip.to_string()))?;
        writeln!(out, "qpn = 0x{:X}", n.qpn)?;
        writeln!(out, "gid = {}", quote(&n.gid.to_string()))?;
    }
    Ok(())
}

fn write_traffic(out: &mut String, flow: &Traffic) -> fmt::Result {
    writeln!(out, "\n[[traffic]]")?;
    writeln!(out, "from = {}", quote(&flow.from))?;
    writeln!(out, "to = {}", quote(&flow.to.to_string()))?;
    writeln!(out, "size = {}", flow.size)?;
    writeln!(out, "rate_pps = {}", flow.rate_pps)?;
    writeln!(out, "dst_port = {}", flow.dst_port)?;
    writeln!(out, "src_port = {}", flow.src_port)
}

/// TOML integers stop at `i64::MAX`; larger values go in a hex string.
fn u64_literal(v: u64, hex: bool) -> String {
    match (i64::try_from(v), hex) {
        (Ok(_), false) => v.to_string(),
        (Ok(_), true) => format!("0x{v:016X}"),
        (Err(_), _) => format!("\"0x{v:016X}\""),
    }
}

/// Shortest text that reads back as the same f64, always with a '.' or exponent.
fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

fn quoted_list(items: impl Iterator<Item = String>) -> String {
    list(items.map(|s| quote(&s)))
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_u64_goes_in_a_string() {
        assert_eq!(u64_literal(5, false), "5");
        assert_eq!(u64_literal(5, true), "0x0000000000000005");
        assert_eq!(u64_literal(u64::MAX, false), "\"0xFFFFFFFFFFFFFFFF\"");
    }

    #[test]
    fn floats_keep_a_fraction_or_exponent() {
        assert_eq!(float(5.0), "5.0");
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(1e-7), "1e-7");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
