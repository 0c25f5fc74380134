//! `[provider]`, `[provider.fabric]`, `[provider.rocev2]` and `[provider.verbs]`.

use super::addr;
use super::{Ctx, Result};
use crate::model::{Fabric, Ipv4Cidr, Provider, Rocev2, Verbs};
use crate::raw::{Int, RawProvider, Str};
use crate::schema::{self, IntRange};

pub(super) fn provider(raw: &RawProvider, ctx: &Ctx<'_>) -> Result<Provider> {
    let d = Fabric::default();
    let f = &raw.fabric;
    let seed = match &f.seed {
        None => d.seed,
        Some(v) => ctx.u64(v, "provider.fabric.seed", schema::U64_EXPECTED)?,
    };
    Ok(Provider {
        kind: raw.kind.unwrap_or_default(),
        fabric: Fabric {
            ib_mtu: ib_mtu(&f.ib_mtu, "provider.fabric.ib_mtu", d.ib_mtu, ctx)?,
            loss: ctx.float_or(&f.loss, "provider.fabric.loss", schema::PROBABILITY, d.loss)?,
            reorder: ctx.float_or(
                &f.reorder,
                "provider.fabric.reorder",
                schema::PROBABILITY,
                d.reorder,
            )?,
            seed,
        },
        rocev2: rocev2(raw, ctx)?,
        verbs: verbs(raw, ctx)?,
    })
}

fn verbs(raw: &RawProvider, ctx: &Ctx<'_>) -> Result<Verbs> {
    let d = Verbs::default();
    let v = &raw.verbs;
    let device = match &v.device {
        None => d.device,
        Some(s) => {
            let name = s.get_ref().trim();
            let printable = name.chars().all(|c| c.is_ascii_graphic());
            if name.len() > schema::DEVICE_MAX || !printable {
                return Err(ctx.invalid(
                    &s.span(),
                    "provider.verbs.device",
                    schema::DEVICE_EXPECTED,
                ));
            }
            name.to_string()
        }
    };
    Ok(Verbs {
        device,
        port: ctx.int_or(&v.port, "provider.verbs.port", schema::VERBS_PORT, d.port)?,
        gid_index: ctx.int_or(
            &v.gid_index,
            "provider.verbs.gid_index",
            schema::GID_INDEX,
            d.gid_index,
        )?,
        pkey_index: ctx.int_or(
            &v.pkey_index,
            "provider.verbs.pkey_index",
            schema::PKEY_INDEX,
            d.pkey_index,
        )?,
    })
}

fn rocev2(raw: &RawProvider, ctx: &Ctx<'_>) -> Result<Rocev2> {
    let d = Rocev2::default();
    let r = &raw.rocev2;
    Ok(Rocev2 {
        port: ctx.int_or(&r.port, "provider.rocev2.port", schema::UDP_PORT, d.port)?,
        multicast_loop: r.multicast_loop.unwrap_or(d.multicast_loop),
        gso: r.gso.unwrap_or(d.gso),
        gro: r.gro.unwrap_or(d.gro),
        ib_mtu: ib_mtu(&r.ib_mtu, "provider.rocev2.ib_mtu", d.ib_mtu, ctx)?,
        ipv6_group_range: match &r.ipv6_group_range {
            None => d.ipv6_group_range,
            Some(v) => ipv6_group_range(v, ctx)?,
        },
    })
}

/// An administratively scoped (RFC 2365) IPv4 network for IPv6 groups on an
/// IPv4 underlay: whole (no host bits), of /8../24, away from the IPoIB
/// broadcast group's 239.255.255.255; `""` is none.
fn ipv6_group_range(v: &Str, ctx: &Ctx<'_>) -> Result<Option<Ipv4Cidr>> {
    const PATH: &str = "provider.rocev2.ipv6_group_range";
    if v.get_ref().is_empty() {
        return Ok(None);
    }
    let bad = || ctx.invalid(&v.span(), PATH, schema::IPV6_GROUP_RANGE_EXPECTED);
    let c = addr::ipv4_cidr(v, PATH, ctx).map_err(|_| bad())?;
    let net = u32::from(c.addr);
    let host = u32::MAX.checked_shr(u32::from(c.prefix)).unwrap_or(0);
    let broadcast = u32::from(std::net::Ipv4Addr::new(239, 255, 255, 255));
    let ok = (8..=24).contains(&c.prefix)
        && net >> 24 == 239
        && net & host == 0
        && (broadcast & !host) != net;
    ok.then_some(Some(c)).ok_or_else(bad)
}

/// One of the InfiniBand MTU sizes.
fn ib_mtu(v: &Option<Int>, path: &str, default: u16, ctx: &Ctx<'_>) -> Result<u16> {
    match v {
        None => Ok(default),
        Some(v) if schema::IB_MTUS.contains(v.get_ref()) => {
            ctx.int(v, path, IntRange::dec(256, 4096))
        }
        Some(v) => Err(ctx.invalid(&v.span(), path, &schema::ib_mtu_expected())),
    }
}
