//! Virtual addresses (`"10.0.0.3/24 dev eth0 label eth0:1"`) and interface names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

/// Address family of an instance (all of its addresses share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4: adverts to 224.0.0.18, gratuitous ARP.
    Ipv4,
    /// IPv6: adverts to ff02::12, unsolicited neighbour advertisements.
    Ipv6,
}

impl Family {
    /// Family of an address.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        })
    }
}

/// One virtual address: what `ip addr add ADDR/PREFIX dev DEV label LABEL` would take.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VirtualAddress {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length; a bare address gets /32 (IPv4) or /128 (IPv6).
    pub prefix_len: u8,
    /// Device to put it on; `None` means the instance's interface.
    pub dev: Option<String>,
    /// IPv4 label (alias name such as `eth0:1`).
    pub label: Option<String>,
}

impl VirtualAddress {
    /// Address family.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// The device the address goes on, given the instance's interface.
    pub fn device<'a>(&'a self, instance_interface: &'a str) -> &'a str {
        self.dev.as_deref().unwrap_or(instance_interface)
    }
}

impl fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)?;
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if let Some(label) = &self.label {
            write!(f, " label {label}")?;
        }
        Ok(())
    }
}

impl FromStr for VirtualAddress {
    type Err = String;

    /// Parse `ADDR[/PREFIX] [dev NAME] [label NAME]`; the message says what is allowed.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let first = words.next().ok_or_else(|| {
            "empty address; expected \"ADDR[/PREFIX] [dev NAME] [label NAME]\"".to_string()
        })?;
        let (addr_text, prefix_text) = match first.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (first, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{addr_text}` is not an IPv4 or IPv6 address"))?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let prefix_len = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "prefix length `/{p}` is out of range; allowed: /1 to /{max}"
                    ));
                }
            },
        };
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(format!(
                "{addr} cannot be a virtual address (unspecified, multicast or loopback)"
            ));
        }
        if let IpAddr::V4(v4) = addr
            && v4.is_broadcast()
        {
            return Err(format!("{addr} cannot be a virtual address (broadcast)"));
        }
        let mut dev = None;
        let mut label = None;
        while let Some(word) = words.next() {
            let slot = match word {
                "dev" => &mut dev,
                "label" => &mut label,
                other => {
                    return Err(format!(
                        "unknown option `{other}`; allowed after the address: `dev NAME`, `label NAME`"
                    ));
                }
            };
            let value = words
                .next()
                .ok_or_else(|| format!("`{word}` needs a name after it"))?;
            if slot.is_some() {
                return Err(format!("`{word}` is given twice"));
            }
            *slot = Some(value.to_string());
        }
        if let Some(d) = &dev {
            check_ifname(d).map_err(|e| format!("dev: {e}"))?;
        }
        if let Some(l) = &label {
            if addr.is_ipv6() {
                return Err("`label` is only for IPv4 addresses".to_string());
            }
            if l.is_empty() || l.len() > 15 || l.contains('/') {
                return Err(format!(
                    "label `{l}` is not valid; allowed: 1 to 15 bytes, no `/`"
                ));
            }
        }
        Ok(VirtualAddress {
            addr,
            prefix_len,
            dev,
            label,
        })
    }
}

/// Check a Linux interface name the way the kernel does (`dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty interface name".to_string());
    }
    // IFNAMSIZ is 16 including the terminating NUL.
    if name.len() > 15 {
        return Err(format!("interface name `{name}` is longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "interface name `{name}` contains {c:?}; not allowed: `/`, `:`, whitespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_form() {
        let v: VirtualAddress = "10.0.0.3/24 dev eth0 label eth0:1".parse().unwrap();
        assert_eq!(v.addr, "10.0.0.3".parse::<IpAddr>().unwrap());
        assert_eq!(v.prefix_len, 24);
        assert_eq!(v.dev.as_deref(), Some("eth0"));
        assert_eq!(v.label.as_deref(), Some("eth0:1"));
        assert_eq!(v.to_string(), "10.0.0.3/24 dev eth0 label eth0:1");
    }

    #[test]
    fn bare_addresses_get_host_prefixes() {
        let v: VirtualAddress = "192.0.2.100".parse().unwrap();
        assert_eq!(v.prefix_len, 32);
        let v: VirtualAddress = "2001:db8::1".parse().unwrap();
        assert_eq!(v.prefix_len, 128);
        assert_eq!(v.family(), Family::Ipv6);
        assert_eq!(v.to_string(), "2001:db8::1/128");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "10.0.0.256",
            "10.0.0.3/33",
            "10.0.0.3/0",
            "10.0.0.3/x",
            "2001:db8::1/129",
            "224.0.0.18",
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.0.0.3 brd 10.0.0.255",
            "10.0.0.3 dev",
            "10.0.0.3 dev eth0 dev eth1",
            "10.0.0.3 dev a/b",
            "10.0.0.3 dev averyveryverylongname",
            "2001:db8::1 label eth0:1",
            "10.0.0.3 label averyveryverylonglabel",
        ] {
            assert!(bad.parse::<VirtualAddress>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn interface_names() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("enp0s31f6").is_ok());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("eth0:1").is_err());
        assert!(check_ifname("..").is_err());
        assert!(check_ifname("0123456789abcdef").is_err());
    }
}
