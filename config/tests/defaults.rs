//! The embedded default parses and describes the documented three-host fabric;
//! a minimal file gets every documented default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipoib_config::{
    embedded_default, from_str, Config, Control, Dataplane, Fabric, Hugepages, Interface, Ipv4Cidr,
    LogLevel, ProviderKind, Rocev2, Run, EMBEDDED_DEFAULT,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn embedded_default_parses() {
    let parsed = from_str(EMBEDDED_DEFAULT, "default.toml");
    assert!(parsed.is_ok(), "{}", parsed.unwrap_err());
    assert_eq!(embedded_default(), parsed.unwrap());
}

#[test]
fn embedded_default_is_three_hosts_on_a_fabric() {
    let c = embedded_default();
    assert_eq!(c.provider.kind, ProviderKind::Fabric);
    assert_eq!(c.provider.fabric.ib_mtu, 2048);
    assert_eq!(c.dataplane.lcores, vec![0, 1]);

    let names: Vec<&str> = c.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["ib0", "ib1", "ib2"]);
    for (n, iface) in c.interfaces.iter().enumerate() {
        let port = n as u16 + 1;
        assert_eq!(iface.port, port);
        assert_eq!(iface.guid, Interface::default_guid(port));
        assert_eq!(iface.ipv4[0].addr, Ipv4Addr::new(10, 0, 0, port as u8));
        assert_eq!(iface.ipv4[0].prefix, 24);
        assert_eq!(
            iface.ipv6[0].addr,
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, port)
        );
        assert_eq!(iface.ipv6[0].prefix, 64);
        assert!(iface.groups.contains(&ip("239.1.1.1")), "{}", iface.name);
    }
    let lcores: Vec<usize> = c.interfaces.iter().map(|i| i.lcore).collect();
    assert_eq!(lcores, [0, 0, 1]);

    // ib0 sends to 239.2.2.2 without joining it; ib1 and ib2 are full members.
    let group = ip("239.2.2.2");
    assert_eq!(c.interfaces[0].sendonly, vec![group]);
    assert!(!c.interfaces[0].groups.contains(&group));
    assert!(c.interfaces[1].groups.contains(&group));
    assert!(c.interfaces[2].groups.contains(&group));

    assert_eq!(c.run.duration_s, 5.0);
    let flows: Vec<(&str, IpAddr, u16, u64)> = c
        .traffic
        .iter()
        .map(|t| (t.from.as_str(), t.to, t.size, t.rate_pps))
        .collect();
    assert_eq!(
        flows,
        [
            ("ib0", ip("10.0.0.2"), 64, 1_000_000),
            ("ib1", ip("10.0.0.3"), 64, 1_000_000),
            ("ib2", ip("10.0.0.1"), 64, 1_000_000),
            ("ib1", ip("239.1.1.1"), 64, 10_000),
            ("ib0", ip("239.2.2.2"), 64, 10_000),
            ("ib0", ip("fd00::3"), 64, 10_000),
        ]
    );
}

/// The default has no static neighbours: hosts find each other with ARP/ND,
/// so every flow's destination is an address of another host.
#[test]
fn embedded_default_resolves_instead_of_static_neighbours() {
    let c = embedded_default();
    for iface in &c.interfaces {
        assert!(iface.neighbours.is_empty(), "{}", iface.name);
    }
    for t in c.traffic.iter().filter(|t| !t.to.is_multicast()) {
        let owner = c.interfaces.iter().find(|o| {
            o.ipv4.iter().any(|a| IpAddr::V4(a.addr) == t.to)
                || o.ipv6.iter().any(|a| IpAddr::V6(a.addr) == t.to)
        });
        assert!(
            owner.is_some_and(|o| o.name != t.from),
            "{} -> {}",
            t.from,
            t.to
        );
    }
}

#[test]
fn minimal_file_gets_every_default() {
    let c = from_str("[[interface]]\nname = \"x\"\nport = 7\n", "min.toml").unwrap();
    let want = Config {
        dataplane: Dataplane::default(),
        provider: Default::default(),
        interfaces: vec![Interface {
            name: "x".into(),
            port: 7,
            parent: None,
            child_index: 0,
            lcore: 0,
            queues: 1,
            pkey: 0xFFFF,
            qkey: 0x0B1B,
            mtu: 2044,
            guid: 0x0002_c903_0000_0007,
            ipv4: vec![],
            ipv6: vec![],
            groups: vec![],
            sendonly: vec![],
            neighbours: vec![],
            local_ip: None,
            tun: None,
        }],
        traffic: vec![],
        control: Control::default(),
        run: Run::default(),
        log: Default::default(),
        metrics: Default::default(),
    };
    assert_eq!(c, want);
    // Spot-check the documented values behind the Default impls.
    assert_eq!(c.dataplane.lcores, vec![0]);
    assert_eq!(
        (
            c.dataplane.burst,
            c.dataplane.tx_ring_size,
            c.dataplane.buf_size
        ),
        (32, 1024, 2176)
    );
    assert_eq!(c.dataplane.hugepages, Hugepages::Auto);
    assert_eq!(c.provider.kind, ProviderKind::Fabric);
    assert_eq!(
        c.provider.fabric,
        Fabric {
            ib_mtu: 2048,
            loss: 0.0,
            reorder: 0.0,
            seed: 1
        }
    );
    assert_eq!(
        c.provider.rocev2,
        Rocev2 {
            port: 4791,
            multicast_loop: true,
            gso: false,
            gro: false,
            ib_mtu: 1024,
            ipv6_group_range: Some(Ipv4Cidr {
                addr: Ipv4Addr::new(239, 254, 0, 0),
                prefix: 16
            })
        }
    );
    assert_eq!(
        (c.control.join_timeout_ms, c.control.neigh_queue),
        (1000, 3)
    );
    assert_eq!(c.log.level, LogLevel::Info);
}

#[test]
fn mempool_cache_default_shrinks_with_a_small_pool() {
    let c = from_str(
        "dataplane.mempool_size = 400\n[[interface]]\nname = \"x\"\nport = 7\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.dataplane.mempool_cache, 100);
}

#[test]
fn traffic_defaults_and_hex_integers() {
    let src = "[[interface]]\nname = \"x\"\nport = 0x10\npkey = 0x8001\nguid = \"0xFFFFFFFFFFFFFFFF\"\nipv6 = [\"fd00::1/64\"]\n[[traffic]]\nfrom = \"x\"\nto = \"ff02::1\"\n";
    let c = from_str(src, "t.toml").unwrap();
    let iface = &c.interfaces[0];
    assert_eq!((iface.port, iface.pkey, iface.guid), (16, 0x8001, u64::MAX));
    let t = &c.traffic[0];
    assert_eq!((t.size, t.rate_pps, t.dst_port, t.src_port), (64, 0, 9, 9));
}

#[test]
fn rocev2_interfaces_take_their_local_address() {
    let src = "[provider]\nkind = \"rocev2\"\n[provider.rocev2]\nport = 4792\ngso = true\ngro = true\n[[interface]]\nname = \"r0\"\nport = 1\nmtu = 1020\nlocal_ip = \"192.168.7.1\"\n[[interface]]\nname = \"r1\"\nport = 2\nlocal_ip = \"fd00::7\"\nmtu = 1000\n";
    let c = from_str(src, "t.toml").unwrap();
    assert_eq!(c.provider.kind, ProviderKind::Rocev2);
    let r = &c.provider.rocev2;
    assert_eq!(
        (r.port, r.multicast_loop, r.gso, r.gro, r.ib_mtu),
        (4792, true, true, true, 1024)
    );
    assert_eq!(
        c.interfaces[0].local_ip,
        Some(IpAddr::V4(Ipv4Addr::new(192, 168, 7, 1)))
    );
    assert_eq!(c.interfaces[1].local_ip, Some("fd00::7".parse().unwrap()));
}

#[test]
fn rocev2_example_is_valid() {
    let c = from_str(
        include_str!("../examples/rocev2.toml"),
        "examples/rocev2.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.provider.kind, ProviderKind::Rocev2);
    assert!(c.interfaces.iter().all(|i| i.local_ip.is_some()));
}
