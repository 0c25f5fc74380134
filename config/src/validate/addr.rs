//! Address strings: CIDRs, multicast groups, GIDs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::{Ctx, Result};
use crate::model::{Ipv4Cidr, Ipv6Cidr};
use crate::raw::Str;
use crate::schema;

/// Splits `addr/prefix` and checks the prefix against the family's width.
fn cidr<A: FromStr>(text: &str, max_prefix: u8) -> Option<(A, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    // `u8::from_str` accepts a leading '+'; a prefix is digits only.
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= max_prefix).then_some(())?;
    Some((addr.parse().ok()?, prefix))
}

pub(super) fn ipv4_cidr(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<Ipv4Cidr> {
    cidr::<Ipv4Addr>(v.get_ref(), 32)
        .map(|(addr, prefix)| Ipv4Cidr { addr, prefix })
        .ok_or_else(|| {
            ctx.invalid(
                &v.span(),
                path,
                "an IPv4 address with prefix 0..=32 like \"10.0.0.1/24\"",
            )
        })
}

pub(super) fn ipv6_cidr(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<Ipv6Cidr> {
    cidr::<Ipv6Addr>(v.get_ref(), 128)
        .map(|(addr, prefix)| Ipv6Cidr { addr, prefix })
        .ok_or_else(|| {
            ctx.invalid(
                &v.span(),
                path,
                "an IPv6 address with prefix 0..=128 like \"fd00::1/64\"",
            )
        })
}

pub(super) fn ip(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<IpAddr> {
    v.get_ref()
        .parse()
        .map_err(|_| ctx.invalid(&v.span(), path, "an IPv4 or IPv6 address"))
}

pub(super) fn multicast_group(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<IpAddr> {
    const EXPECTED: &str = "an IPv4 or IPv6 multicast address (224.0.0.0/4 or ff00::/8)";
    let addr: IpAddr = v
        .get_ref()
        .parse()
        .map_err(|_| ctx.invalid(&v.span(), path, EXPECTED))?;
    if addr.is_multicast() {
        Ok(addr)
    } else {
        Err(ctx.invalid_msg(
            &v.span(),
            path,
            format!("expected {EXPECTED}, got unicast address {addr}"),
        ))
    }
}

pub(super) fn gid(v: &Str, path: &str, ctx: &Ctx<'_>) -> Result<Ipv6Addr> {
    v.get_ref()
        .parse()
        .map_err(|_| ctx.invalid(&v.span(), path, &schema::gid_expected()))
}

#[cfg(test)]
mod tests {
    use super::cidr;
    use std::net::Ipv4Addr;

    #[test]
    fn cidr_accepts_only_well_formed_prefixes() {
        assert_eq!(
            cidr::<Ipv4Addr>("10.0.0.1/24", 32),
            Some((Ipv4Addr::new(10, 0, 0, 1), 24))
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/33",
            "10.0.0.1/+8",
            "10.0.0/8",
            "/8",
        ] {
            assert_eq!(cidr::<Ipv4Addr>(bad, 32), None, "{bad}");
        }
    }
}
