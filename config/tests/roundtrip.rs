//! `Config::to_toml` writes the effective configuration in a form that parses back
//! to an equal `Config`, for the embedded default and for generated valid configs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipoib_config::{
    embedded_default, from_str, Config, Control, Dataplane, Fabric, Hugepages, Interface, Ipv4Cidr,
    Ipv6Cidr, Log, LogLevel, Neighbour, Provider, ProviderKind, Rocev2, Run, Traffic, Tun, Verbs,
};
use proptest::prelude::*;
use proptest::sample::select;

fn round_trip(config: &Config) -> Config {
    let text = config.to_toml();
    match from_str(&text, "effective.toml") {
        Ok(back) => back,
        Err(e) => panic!("to_toml output does not parse: {e}\n{text}"),
    }
}

#[test]
fn embedded_default_round_trips() {
    let config = embedded_default();
    assert_eq!(round_trip(&config), config);
}

#[test]
fn effective_config_spells_out_defaults() {
    let config = from_str("[[interface]]\nname = \"x\"\nport = 5\n", "t.toml").unwrap();
    let text = config.to_toml();
    for line in [
        "burst = 32",
        "hugepages = \"auto\"",
        "qkey = 0x0B1B",
        "guid = 0x0002C90300000005",
        "level = \"info\"",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

fn dataplane() -> impl Strategy<Value = Dataplane> {
    (
        prop::collection::btree_set(0usize..=1023, 1..5),
        1u16..=256,
        (6u32..=16, 6u32..=16),
        256u32..=1_048_576,
        any::<u32>(),
        256u32..=16384,
        select(vec![Hugepages::Auto, Hugepages::On, Hugepages::Off]),
    )
        .prop_map(
            |(lcores, burst, (tx, rx), mempool_size, cache_seed, buf_size, hugepages)| Dataplane {
                lcores: lcores.into_iter().collect(),
                burst,
                tx_ring_size: 1 << tx,
                rx_ring_size: 1 << rx,
                mempool_size,
                mempool_cache: cache_seed % ((mempool_size / 4).min(512) + 1),
                buf_size,
                hugepages,
            },
        )
}

fn provider() -> impl Strategy<Value = Provider> {
    (
        select(vec![
            ProviderKind::Null,
            ProviderKind::Fabric,
            ProviderKind::Rocev2,
            ProviderKind::Verbs,
        ]),
        select(vec![256u16, 512, 1024, 2048, 4096]),
        0.0f64..=1.0,
        0.0f64..=1.0,
        any::<u64>(),
        (
            1u16..=65535,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            select(vec![256u16, 512, 1024, 2048, 4096]),
            select(vec![None, Some((239u8, 254u8, 16u8)), Some((239, 1, 24))]),
        ),
        (
            select(vec![
                "",
                "rxe0",
                "mlx5_1",
                "0002:c903:0000:0001",
                "netdev:eth0",
            ]),
            1u8..=255,
            any::<u8>(),
            any::<u16>(),
        ),
    )
        .prop_map(|(kind, ib_mtu, loss, reorder, seed, r, v)| Provider {
            kind,
            fabric: Fabric {
                ib_mtu,
                loss,
                reorder,
                seed,
            },
            rocev2: Rocev2 {
                port: r.0,
                multicast_loop: r.1,
                gso: r.2,
                gro: r.3,
                ib_mtu: r.4,
                ipv6_group_range: r.5.map(|(a, b, prefix)| Ipv4Cidr {
                    addr: Ipv4Addr::new(a, b, 0, 0),
                    prefix,
                }),
            },
            verbs: Verbs {
                device: v.0.to_string(),
                port: v.1,
                gid_index: v.2,
                pkey_index: v.3,
            },
        })
}

/// Raw material for one interface; `build` fits it to the rest of the config.
#[derive(Debug, Clone)]
struct InterfaceSeed {
    lcore: usize,
    pkey: u16,
    qkey: u32,
    mtu: u16,
    custom_guid: Option<u64>,
    ipv4: Vec<(Ipv4Addr, u8)>,
    ipv6: Vec<(Ipv6Addr, u8)>,
    groups: std::collections::BTreeSet<u32>,
    sendonly: std::collections::BTreeSet<u32>,
    v6_group: Option<u16>,
    neighbours: std::collections::BTreeMap<u32, (u32, Ipv6Addr, bool)>,
}

fn interface_seed() -> impl Strategy<Value = InterfaceSeed> {
    (
        (
            any::<usize>(),
            1u16..=0x7FFF,
            any::<bool>(),
            0u32..=0x7FFF_FFFF,
            any::<u16>(),
        ),
        prop::option::of(any::<u64>()),
        prop::collection::vec((any::<[u8; 4]>(), 0u8..=32), 1..3),
        prop::collection::vec((any::<[u8; 16]>(), 0u8..=128), 1..3),
        // Full groups in 224/5, send-only groups in 232/5 short of 239/8:
        // never the same group, nor one of provider.rocev2.ipv6_group_range.
        prop::collection::btree_set(0xE000_0000u32..0xE800_0000, 0..3),
        prop::collection::btree_set(0xE800_0000u32..0xEF00_0000, 0..3),
        prop::option::of(any::<u16>()),
        prop::collection::btree_map(
            1u32..0x00FF_FFFF,
            (1u32..=0xFF_FFFF, any::<[u8; 16]>(), any::<bool>()),
            0..4,
        ),
    )
        .prop_map(
            |(
                (lcore, pkey_low, pkey_high, qkey, mtu),
                guid,
                v4,
                v6,
                groups,
                sendonly,
                v6_group,
                neighbours,
            )| {
                InterfaceSeed {
                    lcore,
                    pkey: pkey_low | if pkey_high { 0x8000 } else { 0 },
                    qkey,
                    mtu,
                    custom_guid: guid,
                    ipv4: v4
                        .into_iter()
                        .map(|(a, p)| (Ipv4Addr::from(a), p))
                        .collect(),
                    ipv6: v6
                        .into_iter()
                        .map(|(a, p)| (Ipv6Addr::from(a), p))
                        .collect(),
                    groups,
                    sendonly,
                    v6_group,
                    neighbours: neighbours
                        .into_iter()
                        .map(|(ip, (qpn, gid, v6))| (ip, (qpn, Ipv6Addr::from(gid), v6)))
                        .collect(),
                }
            },
        )
}

fn build_interface(
    i: usize,
    port: u16,
    seed: InterfaceSeed,
    dp: &Dataplane,
    p: &Provider,
) -> Interface {
    let max_mtu = match p.kind {
        ProviderKind::Fabric => p.fabric.ib_mtu - 4,
        ProviderKind::Rocev2 => p.rocev2.ib_mtu - 4,
        ProviderKind::Null | ProviderKind::Verbs => 4092,
    };
    // Required with rocev2, optional otherwise: both shapes must round-trip.
    // The seed's low bits pick which shapes appear. (IPv6 on an IPv4
    // underlay needs the rocev2 IPv6 group range.)
    let v4_underlay_ok = p.kind != ProviderKind::Rocev2 || p.rocev2.ipv6_group_range.is_some();
    let local_ip =
        (p.kind == ProviderKind::Rocev2 || seed.qkey & 1 == 0).then(|| match seed.ipv4.first() {
            Some(&(addr, _)) if seed.qkey & 2 == 0 && v4_underlay_ok => {
                IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (u32::from(addr) & 0xFFFF) | 1))
            }
            _ => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, port)),
        });
    let mut groups: Vec<IpAddr> = seed.groups.iter().map(|&g| IpAddr::V4(g.into())).collect();
    if let Some(g) = seed.v6_group {
        groups.push(IpAddr::V6(Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, g)));
    }
    Interface {
        name: format!("ib{i}.{port}"),
        port,
        parent: None,
        child_index: 0,
        lcore: seed.lcore % dp.lcores.len(),
        // Several queues only on verbs, at most one per lcore.
        queues: if p.kind == ProviderKind::Verbs {
            1 + (seed.pkey % dp.lcores.len() as u16)
        } else {
            1
        },
        pkey: seed.pkey,
        qkey: seed.qkey,
        mtu: 68 + seed.mtu % (max_mtu - 67),
        // Random GUIDs carry the top bit, which generated defaults never have: no clashes.
        guid: seed
            .custom_guid
            .map_or(Interface::default_guid(port), |g| g | 1 << 63),
        ipv4: seed
            .ipv4
            .iter()
            .map(|&(addr, prefix)| Ipv4Cidr { addr, prefix })
            .collect(),
        ipv6: seed
            .ipv6
            .iter()
            .map(|&(addr, prefix)| Ipv6Cidr { addr, prefix })
            .collect(),
        groups,
        sendonly: seed
            .sendonly
            .iter()
            .map(|&g| IpAddr::V4(g.into()))
            .collect(),
        neighbours: seed
            .neighbours
            .iter()
            .map(|(&host, &(qpn, gid, v6))| Neighbour {
                // 10.0.0.0/8 and fd00::/8 are unicast, and distinct per host number.
                ip: if v6 {
                    IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(host)))
                } else {
                    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | host))
                },
                qpn,
                gid,
            })
            .collect(),
        local_ip,
        // With and without a TUN device; names unique per interface.
        tun: (seed.qkey & 4 == 0).then(|| Tun {
            name: format!("tun{i}"),
        }),
    }
}

fn build_traffic(
    seed: (usize, bool, u32, u16, u64, u16, u16),
    interfaces: &[Interface],
) -> Traffic {
    let (from, multicast, host, size, rate_pps, dst_port, src_port) = seed;
    let iface = &interfaces[from % interfaces.len()];
    Traffic {
        from: iface.name.clone(),
        to: if multicast {
            IpAddr::V4(Ipv4Addr::from(0xE000_0000 | (host & 0x0FFF_FFFF)))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (host & 0x00FF_FFFF) | 1))
        },
        size: 28 + size % (iface.mtu - 27),
        rate_pps: rate_pps >> 1,
        dst_port: dst_port.max(1),
        src_port: src_port.max(1),
    }
}

fn config() -> impl Strategy<Value = Config> {
    (
        dataplane(),
        provider(),
        prop::collection::btree_set(1u16..=0xBFFF, 1..4),
        prop::collection::vec(interface_seed(), 4),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                any::<u32>(),
                any::<u16>(),
                any::<u64>(),
                any::<u16>(),
                any::<u16>(),
            ),
            0..4,
        ),
        (
            10u32..=60000,
            1u32..=300,
            1u32..=86400,
            16u32..=65536,
            1u32..=64,
        ),
        (0.0f64..=86400.0, 100u32..=60000),
        select(vec![
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]),
    )
        .prop_map(|(dataplane, provider, ports, seeds, flows, c, r, level)| {
            let interfaces: Vec<Interface> = ports
                .into_iter()
                .zip(seeds)
                .enumerate()
                .map(|(i, (port, seed))| build_interface(i, port, seed, &dataplane, &provider))
                .collect();
            let traffic = flows
                .into_iter()
                .map(|f| build_traffic(f, &interfaces))
                .collect();
            Config {
                dataplane,
                provider,
                interfaces,
                traffic,
                control: Control {
                    join_timeout_ms: c.0,
                    backoff_max_s: c.1,
                    sendonly_gc_s: c.2,
                    request_queue: c.3,
                    neigh_queue: c.4,
                },
                run: Run {
                    duration_s: r.0,
                    stats_interval_ms: r.1,
                },
                log: Log { level },
                metrics: Default::default(),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_configs_round_trip(config in config()) {
        prop_assert_eq!(round_trip(&config), config);
    }
}
