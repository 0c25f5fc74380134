//! `[[interface]]` and `[[interface.neighbour]]`.

use std::net::IpAddr;
use std::ops::Range;

use super::addr;
use super::{Ctx, Result};
use crate::error::{ConfigError, ErrorKind};
use crate::model::{Dataplane, Interface, Neighbour, Provider, ProviderKind, Tun};
use crate::raw::{RawInterface, RawNeighbour, Str};
use crate::schema::{self, IntRange};

pub(super) fn interfaces(
    raws: &[RawInterface],
    dataplane: &Dataplane,
    provider: &Provider,
    ctx: &Ctx<'_>,
) -> Result<Vec<Interface>> {
    if raws.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Invalid,
            ctx.file,
            "expected at least one [[interface]] table, got none",
        )
        .key("interface"));
    }
    let mut out: Vec<Interface> = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        let path = format!("interface[{i}]");
        let iface = interface(raw, &path, dataplane, provider, ctx)?;
        check_unique(raw, &iface, &out, &path, ctx)?;
        out.push(iface);
    }
    Ok(out)
}

fn check_unique(
    raw: &RawInterface,
    iface: &Interface,
    earlier: &[Interface],
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let clash = |key: &str, span: Range<usize>, same: &dyn Fn(&Interface) -> bool| match earlier
        .iter()
        .position(same)
    {
        Some(first) => Err(ctx.invalid_msg(
            &span,
            &format!("{path}.{key}"),
            format!("expected a unique {key}, got one already used by interface[{first}]"),
        )),
        None => Ok(()),
    };
    clash("name", raw.name.span(), &|o| o.name == iface.name)?;
    clash("port", raw.port.span(), &|o| o.port == iface.port)?;
    // A defaulted GUID has no span of its own: point at the port it derives from.
    let guid_span = raw.guid.as_ref().map_or(raw.port.span(), |g| g.span());
    clash("guid", guid_span, &|o| o.guid == iface.guid)?;
    // Two interfaces cannot share one kernel device.
    if let (Some(raw_tun), Some(tun)) = (&raw.tun, &iface.tun) {
        let span = raw_tun.name.as_ref().map_or(raw.name.span(), |n| n.span());
        let same = |o: &Interface| o.tun.as_ref().is_some_and(|t| t.name == tun.name);
        if let Some(first) = earlier.iter().position(same) {
            return Err(ctx.invalid_msg(
                &span,
                &format!("{path}.tun.name"),
                format!(
                    "expected a unique TUN device name, got \"{}\" already used by interface[{first}]",
                    tun.name
                ),
            ));
        }
    }
    Ok(())
}

fn interface(
    raw: &RawInterface,
    path: &str,
    dataplane: &Dataplane,
    provider: &Provider,
    ctx: &Ctx<'_>,
) -> Result<Interface> {
    let key = |k: &str| format!("{path}.{k}");
    let name = name(&raw.name, &key("name"), ctx)?;
    let port: u16 = ctx.int(&raw.port, &key("port"), schema::PORT)?;
    let lcore = match &raw.lcore {
        None => 0,
        Some(v) => {
            let last = dataplane.lcores.len() as i64 - 1;
            let expected = format!("an index into dataplane.lcores in 0..={last}");
            ctx.int_with(v, &key("lcore"), IntRange::dec(0, last), &expected)?
        }
    };
    let pkey = match &raw.pkey {
        None => 0xFFFF,
        Some(v) => {
            let pkey: u16 =
                ctx.int_with(v, &key("pkey"), schema::PKEY, &schema::pkey_expected())?;
            if pkey & 0x7FFF == 0 {
                return Err(ctx.invalid(&v.span(), &key("pkey"), &schema::pkey_expected()));
            }
            pkey
        }
    };
    let qkey = match &raw.qkey {
        None => 0x0B1B,
        Some(v) => ctx.int_with(v, &key("qkey"), schema::QKEY, &schema::qkey_expected())?,
    };
    let mtu = mtu(raw, &key("mtu"), provider, ctx)?;
    let guid = match &raw.guid {
        None => Interface::default_guid(port),
        Some(v) => match ctx.u64(v, &key("guid"), schema::GUID_EXPECTED)? {
            0 => return Err(ctx.invalid(&v.span(), &key("guid"), schema::GUID_EXPECTED)),
            guid => guid,
        },
    };

    let mut ipv4 = Vec::with_capacity(raw.ipv4.len());
    for (i, v) in raw.ipv4.iter().enumerate() {
        ipv4.push(addr::ipv4_cidr(v, &format!("{path}.ipv4[{i}]"), ctx)?);
    }
    let mut ipv6 = Vec::with_capacity(raw.ipv6.len());
    for (i, v) in raw.ipv6.iter().enumerate() {
        ipv6.push(addr::ipv6_cidr(v, &format!("{path}.ipv6[{i}]"), ctx)?);
    }
    let groups = multicast_groups(&raw.groups, &key("groups"), &[], ctx)?;
    let sendonly = multicast_groups(&raw.sendonly, &key("sendonly"), &groups, ctx)?;
    let local_ip = local_ip(raw, path, provider, ctx)?;
    let tun = match &raw.tun {
        None => None,
        Some(t) => Some(Tun {
            name: match &t.name {
                Some(v) => self::name(v, &key("tun.name"), ctx)?,
                // The interface's own name is a valid device name too.
                None => name.clone(),
            },
        }),
    };

    let mut iface = Interface {
        name,
        port,
        lcore,
        pkey,
        qkey,
        mtu,
        guid,
        ipv4,
        ipv6,
        groups,
        sendonly,
        neighbours: Vec::with_capacity(raw.neighbour.len()),
        local_ip,
        tun,
    };
    for (i, raw) in raw.neighbour.iter().enumerate() {
        let neighbour = neighbour(raw, &format!("{path}.neighbour[{i}]"), &iface, ctx)?;
        iface.neighbours.push(neighbour);
    }
    Ok(iface)
}

fn name(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<String> {
    let name = v.get_ref();
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if (1..=schema::NAME_MAX).contains(&name.len()) && name.chars().all(valid_char) {
        Ok(name.clone())
    } else {
        Err(ctx.invalid(&v.span(), path, &schema::name_expected()))
    }
}

/// The IPoIB MTU must leave room for the 4-byte IPoIB header within the
/// transport's IB MTU (the fabric's link MTU, or the RoCE path MTU).
fn mtu(raw: &RawInterface, path: &str, provider: &Provider, ctx: &Ctx<'_>) -> Result<u16> {
    let Some(v) = &raw.mtu else {
        return Ok(2044);
    };
    let mtu: u16 = ctx.int(v, path, schema::MTU)?;
    let bound = match provider.kind {
        ProviderKind::Fabric => Some(("provider.fabric.ib_mtu", provider.fabric.ib_mtu)),
        ProviderKind::Rocev2 => Some(("provider.rocev2.ib_mtu", provider.rocev2.ib_mtu)),
        ProviderKind::Null | ProviderKind::Verbs => None,
    };
    if let Some((key, ib_mtu)) = bound {
        let ib_mtu = i64::from(ib_mtu);
        let most = ib_mtu - schema::IPOIB_HEADER;
        if i64::from(mtu) > most {
            let expected = format!(
                "an integer in {}..={most} ({key} {ib_mtu} minus the 4-byte IPoIB header)",
                schema::MTU.lo
            );
            return Err(ctx.invalid(&v.span(), path, &expected));
        }
    }
    Ok(mtu)
}

/// The rocev2 provider binds `local_ip` and derives the port GID from it, so it
/// is required there; other providers accept it and leave it unused.
fn local_ip(
    raw: &RawInterface,
    path: &str,
    provider: &Provider,
    ctx: &Ctx<'_>,
) -> Result<Option<IpAddr>> {
    let key = format!("{path}.local_ip");
    match &raw.local_ip {
        Some(v) => {
            let ip = addr::ip(v, &key, ctx)?;
            if ip.is_multicast() || ip.is_unspecified() {
                return Err(ctx.invalid(&v.span(), &key, "a unicast IPv4 or IPv6 address"));
            }
            Ok(Some(ip))
        }
        None if provider.kind == ProviderKind::Rocev2 => Err(ctx.invalid_msg(
            &raw.name.span(),
            &key,
            "missing required key with provider.kind = \"rocev2\", expected an IPv4 or IPv6 address string".into(),
        )),
        None => Ok(None),
    }
}

fn multicast_groups(
    raws: &[Str],
    path: &str,
    exclude: &[IpAddr],
    ctx: &Ctx<'_>,
) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::with_capacity(raws.len());
    for (i, v) in raws.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let group = addr::multicast_group(v, &here, ctx)?;
        if let Some(first) = out.iter().position(|&g| g == group) {
            return Err(ctx.invalid_msg(
                &v.span(),
                &here,
                format!("expected distinct groups, got {group} again (first at {path}[{first}])"),
            ));
        }
        if exclude.contains(&group) {
            return Err(ctx.invalid_msg(
                &v.span(),
                &here,
                format!("expected a group this interface is not a full member of, got {group} (already in groups; a full member can send)"),
            ));
        }
        out.push(group);
    }
    Ok(out)
}

fn neighbour(
    raw: &RawNeighbour,
    path: &str,
    iface: &Interface,
    ctx: &Ctx<'_>,
) -> Result<Neighbour> {
    let ip_path = format!("{path}.ip");
    let ip = addr::ip(&raw.ip, &ip_path, ctx)?;
    let (family_ok, family) = match ip {
        IpAddr::V4(_) => (!iface.ipv4.is_empty(), "IPv4"),
        IpAddr::V6(_) => (!iface.ipv6.is_empty(), "IPv6"),
    };
    if !family_ok || ip.is_multicast() || ip.is_unspecified() {
        let expected = format!(
            "a unicast address of a family this interface has ({})",
            families(iface)
        );
        return Err(ctx.invalid_msg(
            &raw.ip.span(),
            &ip_path,
            format!("expected {expected}, got {family} address {ip}"),
        ));
    }
    if let Some(first) = iface.neighbours.iter().position(|n| n.ip == ip) {
        return Err(ctx.invalid_msg(
            &raw.ip.span(),
            &ip_path,
            format!(
                "expected a unique neighbour address, got {ip} again (first at neighbour[{first}])"
            ),
        ));
    }
    Ok(Neighbour {
        ip,
        qpn: ctx.int(&raw.qpn, &format!("{path}.qpn"), schema::QPN)?,
        gid: addr::gid(&raw.gid, &format!("{path}.gid"), ctx)?,
    })
}

/// "IPv4, IPv6", "IPv4", or "no addresses" — for messages.
pub(super) fn families(iface: &Interface) -> &'static str {
    match (iface.ipv4.is_empty(), iface.ipv6.is_empty()) {
        (false, false) => "IPv4, IPv6",
        (false, true) => "IPv4",
        (true, false) => "IPv6",
        (true, true) => "none: it has no addresses",
    }
}
