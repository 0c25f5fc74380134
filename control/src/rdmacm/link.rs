//! What differs between InfiniBand and RoCE ports, as pure decisions the
//! service and the address handles follow (tested without hardware).
//!
//! - The group joined for an IPoIB MGID: on InfiniBand the MGID itself
//!   (an `AF_IB` address: rdma_cm's IP-based mapping would put its own
//!   signature in the MGID, not IPoIB's `0x401b`); on RoCE the IPv4/IPv6
//!   group the rocev2 provider maps it to, so verbs and rocev2 hosts meet.
//! - The record a join yields: on InfiniBand the MLID and SL come from the
//!   join event's address vector (the SA's MCMemberRecord); on RoCE there
//!   are no LIDs, and a stable stand-in MLID keeps the tables keyed.
//! - Where unicast paths come from: the SA (path records: DLID, SL, MTU,
//!   rate) on InfiniBand, the GID alone on RoCE.

use crate::igmp::IgmpDefaults;
use crate::mcast::{JoinParams, McastRecord};
use ipoib_dataplane::provider::rocev2::addr;
use ipoib_dataplane::provider::MLID_BASE;
use ipoib_dataplane::wire::Gid;
use rdma_sys::cm::{CmAddr, CmEvent};
use std::net::IpAddr;

/// A port's link layer (`ibv_port_attr.link_layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLayer {
    InfiniBand,
    /// RoCE.
    Ethernet,
}

impl LinkLayer {
    /// From `ibv_port_attr.link_layer` (unspecified counts as InfiniBand,
    /// as libibverbs documents).
    pub fn from_raw(link_layer: u8) -> Self {
        if link_layer == rdma_sys::LINK_LAYER_ETHERNET {
            LinkLayer::Ethernet
        } else {
            LinkLayer::InfiniBand
        }
    }
}

/// Where an interface's unicast paths come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSource {
    /// From the destination GID alone (RoCE: the GID is an IP address).
    Local,
    /// Path records from the subnet administrator (DLID, SL, MTU, rate).
    SubnetAdministrator,
}

pub fn path_source(link: LinkLayer) -> PathSource {
    match link {
        LinkLayer::InfiniBand => PathSource::SubnetAdministrator,
        LinkLayer::Ethernet => PathSource::Local,
    }
}

/// The address rdma_cm binds an interface's ids to: its IP address on
/// RoCE, its port GID (with the P_Key) on InfiniBand.
pub fn cm_local(link: LinkLayer, ip: Option<IpAddr>, port_gid: Gid, pkey: u16) -> Option<CmAddr> {
    match link {
        LinkLayer::Ethernet => ip.map(CmAddr::Ip),
        LinkLayer::InfiniBand => Some(CmAddr::Ib {
            gid: port_gid.0,
            pkey,
        }),
    }
}

/// The group rdma_cm joins for `mgid`, or `None` when this interface
/// cannot join it (not multicast, or an address family its local address
/// does not have).
pub fn cm_group(link: LinkLayer, local: CmAddr, mgid: Gid, pkey: u16) -> Option<CmAddr> {
    match (link, local) {
        (LinkLayer::Ethernet, CmAddr::Ip(me)) => {
            let ip = addr::ip_of(mgid);
            (ip.is_multicast() && ip.is_ipv4() == me.is_ipv4()).then_some(CmAddr::Ip(ip))
        }
        (LinkLayer::InfiniBand, _) => {
            (mgid.0[0] == 0xff).then_some(CmAddr::Ib { gid: mgid.0, pkey })
        }
        (LinkLayer::Ethernet, CmAddr::Ib { .. }) => None,
    }
}

/// A stand-in MLID for a RoCE group: stable, in the multicast range.
pub fn roce_mlid(group: CmAddr) -> u16 {
    let low = match group {
        CmAddr::Ip(IpAddr::V4(v4)) => u32::from(v4),
        CmAddr::Ip(IpAddr::V6(v6)) => u128::from(v6) as u32,
        CmAddr::Ib { gid, .. } => u32::from_be_bytes([gid[12], gid[13], gid[14], gid[15]]),
    };
    MLID_BASE | (low as u16 & 0x3FFF)
}

/// The record a successful join yields. The Q_Key, MTU and rate are
/// IPoIB's (the broadcast group's, or the defaults for the broadcast join
/// itself): rdma_cm's own UD Q_Key is not the one IPoIB QPs use. `None`
/// when an InfiniBand answer has no multicast LID (unusable).
pub fn join_record(
    link: LinkLayer,
    group: CmAddr,
    params: &JoinParams,
    defaults: &IgmpDefaults,
    ev: &CmEvent,
) -> Option<McastRecord> {
    let (qkey, mtu, sl, rate, pkey) = match params.template {
        Some(t) => (t.qkey, t.mtu, t.sl, t.rate, t.pkey),
        None => (
            defaults.qkey,
            defaults.mtu,
            defaults.sl,
            defaults.rate,
            defaults.pkey,
        ),
    };
    let (mlid, sl) = match link {
        LinkLayer::InfiniBand if ev.mlid < MLID_BASE => return None,
        LinkLayer::InfiniBand => (ev.mlid, ev.sl),
        LinkLayer::Ethernet if ev.mlid != 0 => (ev.mlid, sl),
        LinkLayer::Ethernet => (roce_mlid(group), sl),
    };
    Some(McastRecord {
        mgid: params.mgid,
        mlid,
        qkey,
        mtu,
        sl,
        rate,
        pkey,
    })
}
