//! `[[interface]]` and `[[interface.neighbour]]`.

use std::net::IpAddr;
use std::ops::Range;

use super::addr;
use super::{Ctx, Result};
use crate::error::{ConfigError, ErrorKind};
use crate::model::{Dataplane, Interface, Neighbour, Provider, ProviderKind, Tun};
use crate::raw::{RawInterface, RawNeighbour, Str};
use crate::schema::{self, IntRange};
use toml::Spanned;

pub(super) fn interfaces(
    raws: &[Spanned<RawInterface>],
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
    // Parents first, in file order: a child inherits from its validated
    // parent wherever the two are written. The result keeps file order.
    let mut done: Vec<(usize, Interface)> = Vec::with_capacity(raws.len());
    for (i, raw) in raws.iter().enumerate() {
        if raw.get_ref().parent.is_none() {
            let path = format!("interface[{i}]");
            let iface = interface(raw, None, &path, dataplane, provider, ctx)?;
            check_unique(raw.get_ref(), &iface, &done, &path, ctx)?;
            done.push((i, iface));
        }
    }
    for (i, raw) in raws.iter().enumerate() {
        if let Some(parent) = &raw.get_ref().parent {
            let path = format!("interface[{i}]");
            let (p_idx, p) = parent_of(parent, raws, &done, &path, ctx)?;
            let p = p.clone();
            let mut iface = interface(raw, Some(&p), &path, dataplane, provider, ctx)?;
            check_unique(raw.get_ref(), &iface, &done, &path, ctx)?;
            check_child(raw.get_ref(), &iface, p_idx, &done, &path, ctx)?;
            iface.child_index = done
                .iter()
                .filter(|(_, o)| o.parent.as_deref() == Some(p.name.as_str()))
                .count() as u8
                + 1;
            done.push((i, iface));
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, iface)| iface).collect())
}

/// The validated parent a child names: an interface that is not a child.
fn parent_of<'a>(
    v: &Str,
    raws: &[Spanned<RawInterface>],
    done: &'a [(usize, Interface)],
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<(usize, &'a Interface)> {
    let key = format!("{path}.parent");
    let name = v.get_ref();
    if let Some((i, p)) = done
        .iter()
        .find(|(_, o)| o.parent.is_none() && &o.name == name)
    {
        return Ok((*i, p));
    }
    if let Some(r) = raws.iter().find(|r| r.get_ref().name.get_ref() == name) {
        let grand = r.get_ref().parent.as_ref().map_or("", |g| g.get_ref());
        return Err(ctx.invalid_msg(
            &v.span(),
            &key,
            format!("expected a parent interface, got \"{name}\", itself a child of {grand} (children do not nest)"),
        ));
    }
    let names: Vec<&str> = done
        .iter()
        .filter(|(_, o)| o.parent.is_none())
        .map(|(_, o)| o.name.as_str())
        .collect();
    Err(ctx.invalid_msg(
        &v.span(),
        &key,
        format!(
            "expected the name of a configured interface ({}), got \"{name}\"",
            names.join(", ")
        ),
    ))
}

/// A child shares its parent's port and partitions it: its P_Key (full or
/// limited member alike) is used by no other interface on that port, and a
/// parent has at most `Interface::MAX_CHILDREN` children.
fn check_child(
    raw: &RawInterface,
    iface: &Interface,
    parent_idx: usize,
    done: &[(usize, Interface)],
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let span = raw.pkey.as_ref().map_or(raw.name.span(), |v| v.span());
    let same_port = |o: &&(usize, Interface)| o.1.port == iface.port;
    if let Some((i, o)) = done
        .iter()
        .filter(same_port)
        .find(|(_, o)| o.pkey | 0x8000 == iface.pkey | 0x8000)
    {
        return Err(ctx.invalid_msg(
            &span,
            &format!("{path}.pkey"),
            format!(
                "expected a P_Key not used on port {} yet, got {:#06x} (interface[{i}] {} has {:#06x}; \
                 a partition has one interface per port)",
                iface.port, iface.pkey, o.name, o.pkey
            ),
        ));
    }
    let siblings = done
        .iter()
        .filter(|(_, o)| o.parent.as_deref() == iface.parent.as_deref())
        .count();
    if siblings >= Interface::MAX_CHILDREN {
        return Err(ctx.invalid_msg(
            &raw.name.span(),
            &format!("{path}.parent"),
            format!(
                "expected at most {} children of interface[{parent_idx}], got more",
                Interface::MAX_CHILDREN
            ),
        ));
    }
    Ok(())
}

fn check_unique(
    raw: &RawInterface,
    iface: &Interface,
    earlier: &[(usize, Interface)],
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let clash = |key: &str, span: Range<usize>, same: &dyn Fn(&Interface) -> bool| match earlier
        .iter()
        .find(|(_, o)| same(o))
    {
        Some((first, _)) => Err(ctx.invalid_msg(
            &span,
            &format!("{path}.{key}"),
            format!("expected a unique {key}, got one already used by interface[{first}]"),
        )),
        None => Ok(()),
    };
    clash("name", raw.name.span(), &|o| o.name == iface.name)?;
    // Children share their parent's port and GUID (checked against the parent).
    if iface.parent.is_none() {
        let port_span = raw.port.as_ref().map_or(raw.name.span(), |p| p.span());
        clash("port", port_span.clone(), &|o| o.port == iface.port)?;
        // A defaulted GUID has no span of its own: point at the port it derives from.
        let guid_span = raw.guid.as_ref().map_or(port_span, |g| g.span());
        clash("guid", guid_span, &|o| o.guid == iface.guid)?;
    }
    // Two interfaces cannot share one kernel device.
    if let (Some(raw_tun), Some(tun)) = (&raw.tun, &iface.tun) {
        let span = raw_tun.name.as_ref().map_or(raw.name.span(), |n| n.span());
        let same = |o: &&(usize, Interface)| o.1.tun.as_ref().is_some_and(|t| t.name == tun.name);
        if let Some((first, _)) = earlier.iter().find(same) {
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

/// A key a child may leave out or repeat: when set it must equal the parent's.
fn inherited<T: PartialEq + std::fmt::Display>(
    own: Option<(T, Range<usize>)>,
    parent: T,
    path: &str,
    what: &str,
    ctx: &Ctx<'_>,
) -> Result<T> {
    match own {
        Some((v, span)) if v != parent => Err(ctx.invalid_msg(
            &span,
            path,
            format!("expected the parent's {what} {parent} (a child shares it), got {v}"),
        )),
        _ => Ok(parent),
    }
}

fn interface(
    spanned: &Spanned<RawInterface>,
    parent: Option<&Interface>,
    path: &str,
    dataplane: &Dataplane,
    provider: &Provider,
    ctx: &Ctx<'_>,
) -> Result<Interface> {
    let raw = spanned.get_ref();
    let key = |k: &str| format!("{path}.{k}");
    let name = name(&raw.name, &key("name"), ctx)?;
    let own_port = match &raw.port {
        Some(v) => Some((ctx.int::<u16>(v, &key("port"), schema::PORT)?, v.span())),
        None => None,
    };
    let port = match (parent, own_port) {
        (Some(p), own) => inherited(own, p.port, &key("port"), "port", ctx)?,
        (None, Some((port, _))) => port,
        (None, None) => {
            // As serde words a missing key, at the table.
            return Err(ConfigError::new(
                ErrorKind::Schema,
                ctx.file,
                format!(
                    "missing required key, expected an integer in {} (or parent = \"NAME\" for a P_Key child)",
                    schema::PORT
                ),
            )
            .at(ctx.source, Some(spanned.span()))
            .key(key("port")));
        }
    };
    let lcore = match &raw.lcore {
        None => parent.map_or(0, |p| p.lcore),
        Some(v) => {
            let last = dataplane.lcores.len() as i64 - 1;
            let expected = format!("an index into dataplane.lcores in 0..={last}");
            ctx.int_with(v, &key("lcore"), IntRange::dec(0, last), &expected)?
        }
    };
    let queues = match &raw.queues {
        None => 1,
        Some(v) => {
            let lcores = dataplane.lcores.len() as i64;
            let most = lcores.min(schema::QUEUES.hi);
            let queues: u16 = ctx.int_with(
                v,
                &key("queues"),
                IntRange::dec(schema::QUEUES.lo, most),
                &format!(
                    "an integer in 1..={most} (one lcore per queue: dataplane.lcores has {lcores})"
                ),
            )?;
            if queues > 1 && !matches!(provider.kind, ProviderKind::Verbs | ProviderKind::Rocev2) {
                return Err(ctx.invalid(
                    &v.span(),
                    &key("queues"),
                    "1 (several queues need provider.kind = \"verbs\" or \"rocev2\")",
                ));
            }
            queues
        }
    };
    let pkey = match &raw.pkey {
        // A child is there for its partition: the P_Key is not defaulted.
        None if parent.is_some() => {
            return Err(ctx.invalid_msg(
                &raw.name.span(),
                &key("pkey"),
                format!(
                    "missing required key on a child interface, expected {}",
                    schema::pkey_expected()
                ),
            ))
        }
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
    let mtu = match (parent, &raw.mtu) {
        (Some(p), None) => p.mtu,
        _ => mtu(raw, &key("mtu"), provider, ctx)?,
    };
    let own_guid = match &raw.guid {
        None => None,
        Some(v) => match ctx.u64(v, &key("guid"), schema::GUID_EXPECTED)? {
            0 => return Err(ctx.invalid(&v.span(), &key("guid"), schema::GUID_EXPECTED)),
            guid => Some((guid, v.span())),
        },
    };
    let guid = match parent {
        Some(p) => {
            let own = own_guid.map(|(g, s)| (GuidText(g), s));
            inherited(own, GuidText(p.guid), &key("guid"), "guid", ctx)?.0
        }
        None => own_guid.map_or(Interface::default_guid(port), |(g, _)| g),
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
    let local_ip = match parent {
        Some(p) => match (&raw.local_ip, p.local_ip) {
            (Some(v), Some(pip)) => {
                let ip = addr::ip(v, &key("local_ip"), ctx)?;
                Some(inherited(Some((ip, v.span())), pip, &key("local_ip"), "local_ip", ctx)?)
            }
            (Some(v), None) => {
                return Err(ctx.invalid_msg(
                    &v.span(),
                    &key("local_ip"),
                    "expected no local_ip on a child whose parent has none (a child shares its parent's)".into(),
                ))
            }
            (None, pip) => pip,
        },
        None => local_ip(raw, path, provider, ctx)?,
    };
    if provider.kind == ProviderKind::Rocev2 && local_ip.is_some_and(|ip| ip.is_ipv4()) {
        ipv6_on_ipv4_underlay(raw, path, &groups, &sendonly, provider, ctx)?;
    }
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
        parent: parent.map(|p| p.name.clone()),
        child_index: 0,
        lcore,
        queues,
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

/// A GUID as the configuration writes it, for messages.
#[derive(PartialEq, Clone, Copy)]
struct GuidText(u64);

impl std::fmt::Display for GuidText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
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

/// On an IPv4 underlay, IPv6 groups (ND's among them) travel as IPv4 groups
/// of `provider.rocev2.ipv6_group_range`: without it, IPv6 is refused; with
/// it, an IPv4 group of the interface may not sit in that range.
fn ipv6_on_ipv4_underlay(
    raw: &RawInterface,
    path: &str,
    groups: &[IpAddr],
    sendonly: &[IpAddr],
    provider: &Provider,
    ctx: &Ctx<'_>,
) -> Result<()> {
    const RANGE: &str = "provider.rocev2.ipv6_group_range";
    let lists = [
        ("groups", &raw.groups, groups),
        ("sendonly", &raw.sendonly, sendonly),
    ];
    let Some(range) = provider.rocev2.ipv6_group_range else {
        let v6_group = lists.iter().find_map(|(k, raws, list)| {
            let i = list.iter().position(IpAddr::is_ipv6)?;
            Some((format!("{path}.{k}[{i}]"), raws[i].span()))
        });
        let first = raw
            .ipv6
            .first()
            .map(|v| (format!("{path}.ipv6[0]"), v.span()))
            .or(v6_group);
        return match first {
            None => Ok(()),
            Some((key, span)) => Err(ctx.invalid_msg(
                &span,
                &key,
                format!(
                    "IPv6 on an IPv4 underlay (local_ip is IPv4) needs {RANGE} for its groups \
                     (ND's solicited-node and all-nodes groups have no IPv4 group): set it, \
                     e.g. \"239.254.0.0/16\", or give local_ip an IPv6 address"
                ),
            )),
        };
    };
    let host = u32::MAX.checked_shr(u32::from(range.prefix)).unwrap_or(0);
    let net = u32::from(range.addr);
    for (k, raws, list) in lists {
        for (i, g) in list.iter().enumerate() {
            if let IpAddr::V4(v4) = g {
                if u32::from(*v4) & !host == net {
                    return Err(ctx.invalid_msg(
                        &raws[i].span(),
                        &format!("{path}.{k}[{i}]"),
                        format!(
                            "expected a group outside {RANGE} {}/{} (where IPv6 groups map on \
                             an IPv4 underlay), got {v4}",
                            range.addr, range.prefix
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
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
