//! IPv4 configuration of interfaces through the classic socket ioctls (`SIOCSIFADDR`,
//! `SIOCSIFNETMASK`, `SIOCSIFFLAGS`, `SIOCADDRT`, and the `SIOCGIF*` readers) on an AF_INET
//! datagram socket (the link-level ones on any socket).
//!
//! Why not route netlink for IPv4: these ioctls were measured faster for what the hook
//! asks (see `kernel`), and the container side needs no netlink socket when it has no IPv6.
//! A netlink socket made inside the container's namespace holds that namespace one RCU
//! grace period longer after it is closed; measured, that is within the noise of the 20–60
//! ms a namespace takes to die anyway (h21 §1c), and the deferred teardown covers a
//! namespace still alive at poststop whatever socket was used. So IPv6, which has no ioctl
//! for an address without DAD, uses one (`kernel::link::configure_container`). The
//! interface ioctls that are not IPv4's (`SIOCGIFINDEX`, `SIOCGIFFLAGS`, `SIOCSIFFLAGS`)
//! work on any socket, a netlink one included: the kernel hands them to the device layer.
//!
//! Every call acts on the namespace the socket was created in, whatever thread calls it.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// An IPv4 `sockaddr` (port 0), built field by field so no reinterpretation is needed.
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    // sa_data of an AF_INET address: 2 bytes of port, then the address in network order.
    for (slot, byte) in data[2..6].iter_mut().zip(addr.octets()) {
        *slot = byte as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// An `ifreq` naming `name`, with `ifru` as its payload.
fn ifreq(name: &str, ifru: libc::__c_anonymous_ifr_ifru) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut ifr_name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (slot, byte) in ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    Ok(libc::ifreq {
        ifr_name,
        ifr_ifru: ifru,
    })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `name`'s interface index.
pub(crate) fn index(sock: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut req = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_ifindex: 0 })?;
    // SAFETY: `req` is a valid ifreq that lives across the call; SIOCGIFINDEX writes only
    // into it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut req) })?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel filled in `ifru_ifindex`.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))
}

/// `name`'s interface index, `None` when there is no such interface.
pub(crate) fn index_if_present(sock: BorrowedFd<'_>, name: &str) -> io::Result<Option<u32>> {
    match index(sock, name) {
        Ok(index) => Ok(Some(index)),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `name`'s primary IPv4 address and prefix length, `None` when it has none.
pub(crate) fn primary_ipv4(sock: BorrowedFd<'_>, name: &str) -> io::Result<Option<(Ipv4Addr, u8)>> {
    let read = |request| -> io::Result<Option<Ipv4Addr>> {
        let mut req = ifreq(
            name,
            libc::__c_anonymous_ifr_ifru {
                ifru_addr: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
            },
        )?;
        // SAFETY: `req` is a valid ifreq that lives across the call; SIOCGIFADDR and
        // SIOCGIFNETMASK write only into it.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: the call succeeded, so the kernel filled in an AF_INET address (the
        // sockaddr arms of the union share one layout).
        let sa = unsafe { req.ifr_ifru.ifru_addr };
        let b = |i: usize| sa.sa_data[i] as u8;
        Ok(Some(Ipv4Addr::new(b(2), b(3), b(4), b(5))))
    };
    let Some(addr) = read(libc::SIOCGIFADDR)? else {
        return Ok(None);
    };
    let Some(mask) = read(libc::SIOCGIFNETMASK)? else {
        return Ok(None);
    };
    Ok(Some((addr, u32::from(mask).leading_ones() as u8)))
}

/// Sets IFF_UP on `name` unless it is up already; whether it had to.
pub(crate) fn set_up(sock: BorrowedFd<'_>, name: &str) -> io::Result<bool> {
    let mut req = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_flags: 0 })?;
    // SAFETY: `req` is a valid ifreq that lives across the call; SIOCGIFFLAGS writes only
    // into it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel filled in `ifru_flags`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(false);
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(true)
}

/// Gives `name` the IPv4 address `addr/prefix` (broadcast derived by the kernel). Call it
/// while the interface is down: the kernel first applies the address's classful mask.
pub(crate) fn set_ipv4(
    sock: BorrowedFd<'_>,
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
) -> io::Result<()> {
    let mask = Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    );
    let req = ifreq(
        name,
        libc::__c_anonymous_ifr_ifru {
            ifru_addr: sockaddr_v4(addr),
        },
    )?;
    // SAFETY: `req` is a valid ifreq holding an AF_INET address; the kernel only reads it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) })?;
    let req = ifreq(
        name,
        libc::__c_anonymous_ifr_ifru {
            ifru_netmask: sockaddr_v4(mask),
        },
    )?;
    // SAFETY: as above.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFNETMASK, &req) })
}

/// Adds the default route via `gateway` out of `name` (main table, metric 0).
pub(crate) fn add_default_route(
    sock: BorrowedFd<'_>,
    name: &str,
    gateway: Ipv4Addr,
) -> io::Result<()> {
    add_route(
        sock,
        name,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        gateway,
        libc::RTF_UP | libc::RTF_GATEWAY,
    )
}

/// Adds a route to the single address `dst` straight out of `name`, no gateway (scope link):
/// what makes a gateway outside the interface's subnet reachable (the ioctl has no "onlink").
pub(crate) fn add_link_route(sock: BorrowedFd<'_>, name: &str, dst: Ipv4Addr) -> io::Result<()> {
    add_route(
        sock,
        name,
        dst,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::UNSPECIFIED,
        libc::RTF_UP | libc::RTF_HOST,
    )
}

fn add_route(
    sock: BorrowedFd<'_>,
    name: &str,
    dst: Ipv4Addr,
    mask: Ipv4Addr,
    gateway: Ipv4Addr,
    flags: libc::c_ushort,
) -> io::Result<()> {
    let dev = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let route = libc::rtentry {
        rt_pad1: 0,
        rt_dst: sockaddr_v4(dst),
        rt_gateway: sockaddr_v4(gateway),
        rt_genmask: sockaddr_v4(mask),
        rt_flags: flags,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_tos: 0,
        rt_class: 0,
        rt_pad4: [0; 3],
        rt_metric: 0,
        // The kernel copies the name in before the call returns and never writes to it.
        rt_dev: dev.as_ptr().cast_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: `route` is a complete rtentry and `dev`, which `rt_dev` points into, outlives
    // the call; the kernel only reads both.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &route) })
}

/// Sets `name`'s IPv4 broadcast address. A /32 keeps the classful broadcast SIOCSIFADDR gave
/// it (10.255.255.255 for a 10.x address: SIOCSIFNETMASK recomputes it only below /31), and
/// with it a broadcast route; 0.0.0.0 removes both.
pub(crate) fn set_broadcast(sock: BorrowedFd<'_>, name: &str, addr: Ipv4Addr) -> io::Result<()> {
    let req = ifreq(
        name,
        libc::__c_anonymous_ifr_ifru {
            ifru_broadaddr: sockaddr_v4(addr),
        },
    )?;
    // SAFETY: `req` is a valid ifreq that lives across the call; the kernel only reads it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFBRDADDR, &req) })
}

/// `linux/if_arp.h`: a complete entry, and one that never expires (not in the libc crate).
const ATF_COM: libc::c_int = 0x02;
const ATF_PERM: libc::c_int = 0x04;

/// A permanent neighbour entry on `name`: `ip` is at `mac`. No ARP is ever sent for it.
pub(crate) fn set_permanent_neighbour(
    sock: BorrowedFd<'_>,
    name: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> io::Result<()> {
    let dev = ifreq(name, libc::__c_anonymous_ifr_ifru { ifru_ifindex: 0 })?.ifr_name;
    let mut hw = [0 as libc::c_char; 14];
    for (slot, byte) in hw.iter_mut().zip(mac) {
        *slot = byte as libc::c_char;
    }
    let req = libc::arpreq {
        arp_pa: sockaddr_v4(ip),
        arp_ha: libc::sockaddr {
            sa_family: libc::ARPHRD_ETHER,
            sa_data: hw,
        },
        arp_flags: ATF_PERM | ATF_COM,
        arp_netmask: sockaddr_v4(Ipv4Addr::UNSPECIFIED),
        arp_dev: dev,
    };
    // SAFETY: `req` is a complete arpreq that lives across the call; the kernel only reads it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSARP, &req) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_sockaddr_carries_the_address_in_network_order_after_the_port() {
        let sa = sockaddr_v4(Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        let bytes: Vec<u8> = sa.sa_data.iter().map(|b| *b as u8).collect();
        assert_eq!(&bytes[..6], &[0, 0, 10, 77, 0, 2]);
    }

    #[test]
    fn interface_names_that_do_not_fit_an_ifreq_are_refused() {
        let zero = || libc::__c_anonymous_ifr_ifru { ifru_flags: 0 };
        assert!(ifreq("eth0", zero()).is_ok());
        assert!(ifreq("", zero()).is_err());
        assert!(ifreq("sixteen-chars-xx", zero()).is_err());
        assert!(ifreq("a\0b", zero()).is_err());
    }
}
