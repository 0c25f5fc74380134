//! Kernel TUN devices: an interface exposed to the host's own IP stack, so
//! ping, iperf3 or any socket program sends and receives through the
//! dataplane. The device is created with IFF_TUN | IFF_NO_PI (each read and
//! write is one bare IP packet), non-blocking, given the interface's
//! addresses and MTU, and brought up; closing its descriptor removes it.
//! The lcore side (bursts between the device and an interface's rings) is
//! `lcore::TunPort`.

mod netlink;

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a TUN device is created with.
#[derive(Debug, Clone)]
pub struct TunSpec<'a> {
    pub name: &'a str,
    /// IPoIB MTU: the largest IP packet the kernel may hand over.
    pub mtu: u16,
    /// Addresses with their prefix lengths.
    pub addrs: &'a [(IpAddr, u8)],
}

/// An open, configured TUN device.
#[derive(Debug)]
pub struct TunDevice {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
}

/// One line naming the device, the step and the usual cause.
fn describe(name: &str, step: &str, e: &io::Error) -> String {
    let cause = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root or CAP_NET_ADMIN)",
        Some(libc::EBUSY) => " (another process holds the device)",
        Some(libc::EINVAL) if step == "create" => {
            " (a device of that name exists and is not a TUN device)"
        }
        _ => "",
    };
    format!("TUN device {name}: {step}: {e}{cause}")
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    r
}

fn ioctl(fd: RawFd, req: libc::Ioctl, r: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request used here reads or writes one ifreq.
    if unsafe { libc::ioctl(fd, req, r as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Best effort: no IPv6 at all on a device without IPv6 addresses, and no
/// generated link-local address otherwise (the kernel would otherwise send
/// router solicitations and MLD reports of its own through the dataplane).
fn quiet_ipv6(name: &str, has_v6: bool) {
    let (key, value) = if has_v6 {
        ("addr_gen_mode", "1")
    } else {
        ("disable_ipv6", "1")
    };
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{key}"), value);
}

impl TunDevice {
    /// Creates the device, sets its MTU, brings it up and adds its addresses.
    pub fn create(spec: &TunSpec<'_>) -> Result<TunDevice, String> {
        let name = spec.name;
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
            return Err(format!(
                "TUN device {name:?}: expected 1..=15 characters without '/' or spaces"
            ));
        }
        let path = c"/dev/net/tun";
        // SAFETY: a NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOENT) {
                format!("TUN device {name}: /dev/net/tun is missing (load the tun module: modprobe tun)")
            } else {
                describe(name, "open /dev/net/tun", &e)
            });
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut r = ifreq(name);
        r.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut r).map_err(|e| describe(name, "create", &e))?;
        // Control requests go through any socket; IPv4 may be absent, so
        // fall back to IPv6.
        let ctl = [libc::AF_INET, libc::AF_INET6]
            .into_iter()
            .find_map(|family| {
                // SAFETY: plain socket call; the result is checked.
                let s = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
                // SAFETY: a fresh descriptor nobody else owns.
                (s >= 0).then(|| unsafe { OwnedFd::from_raw_fd(s) })
            })
            .ok_or_else(|| describe(name, "control socket", &io::Error::last_os_error()))?;
        let ctl = ctl.as_raw_fd();
        let mut r = ifreq(name);
        ioctl(ctl, libc::SIOCGIFINDEX as libc::Ioctl, &mut r)
            .map_err(|e| describe(name, "interface index", &e))?;
        // SAFETY: SIOCGIFINDEX filled the index member.
        let ifindex = unsafe { r.ifr_ifru.ifru_ifindex } as u32;
        quiet_ipv6(name, spec.addrs.iter().any(|(a, _)| a.is_ipv6()));
        let mut r = ifreq(name);
        r.ifr_ifru.ifru_mtu = libc::c_int::from(spec.mtu);
        ioctl(ctl, libc::SIOCSIFMTU as libc::Ioctl, &mut r)
            .map_err(|e| describe(name, &format!("set mtu {}", spec.mtu), &e))?;
        let mut r = ifreq(name);
        ioctl(ctl, libc::SIOCGIFFLAGS as libc::Ioctl, &mut r)
            .map_err(|e| describe(name, "read flags", &e))?;
        // SAFETY: SIOCGIFFLAGS filled the flags member.
        unsafe { r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        ioctl(ctl, libc::SIOCSIFFLAGS as libc::Ioctl, &mut r)
            .map_err(|e| describe(name, "bring up", &e))?;
        for &(addr, prefix) in spec.addrs {
            netlink::add_address(ifindex, addr, prefix)
                .map_err(|e| describe(name, &format!("add address {addr}/{prefix}"), &e))?;
        }
        Ok(TunDevice {
            fd,
            name: name.to_string(),
            ifindex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The device's descriptor, for the lcore that moves its packets.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_device_step_and_cause() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        let m = describe("ipoib0", "create", &e);
        assert!(m.starts_with("TUN device ipoib0: create: "), "{m}");
        assert!(m.ends_with("(needs root or CAP_NET_ADMIN)"), "{m}");
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert!(describe("x", "create", &e).contains("not a TUN device"));
        assert!(!describe("x", "set mtu 9", &e).contains("TUN device)"));
    }

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        for name in ["", "sixteen-chars-xx", "a/b", "a b"] {
            let spec = TunSpec {
                name,
                mtu: 1500,
                addrs: &[],
            };
            let e = TunDevice::create(&spec).unwrap_err();
            assert!(e.contains("expected 1..=15 characters"), "{e}");
        }
    }
}
