//! `[provider]`, `[provider.fabric]`, `[provider.rocev2]` and `[provider.verbs]`.

use super::{Ctx, Result};
use crate::model::{Fabric, Provider, Rocev2, Verbs};
use crate::raw::{Int, RawProvider};
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
    })
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
