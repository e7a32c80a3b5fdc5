//! Routes and policy rules that move with an instance (`virtual_routes`,
//! `virtual_rules`): written as `ip route` / `ip rule` would take them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::address::check_ifname;

/// What a route does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Forward (the default).
    Unicast,
    /// Drop silently.
    Blackhole,
    /// Drop with ICMP unreachable.
    Unreachable,
    /// Drop with ICMP prohibited.
    Prohibit,
}

/// A prefix: address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn prefix(text: &str, family: Option<bool>) -> Result<Prefix, String> {
    if text == "default" {
        return Err("`default` needs the family: write 0.0.0.0/0 or ::/0".to_string());
    }
    let (a, l) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => {
                return Err(format!(
                    "prefix length `/{l}` is out of range; allowed: /0 to /{max}"
                ));
            }
        },
    };
    if family.is_some_and(|v6| v6 != addr.is_ipv6()) {
        return Err(format!("{addr} is not of the same family as the rest"));
    }
    Ok(Prefix { addr, len })
}

fn number(word: &str, value: Option<&str>) -> Result<u32, String> {
    let v = value.ok_or_else(|| format!("`{word}` needs a number after it"))?;
    v.parse::<u32>()
        .map_err(|_| format!("`{word} {v}`: not a whole number from 0 to 4294967295"))
}

fn name(word: &str, value: Option<&str>) -> Result<String, String> {
    let v = value.ok_or_else(|| format!("`{word}` needs an interface name after it"))?;
    check_ifname(v)?;
    Ok(v.to_string())
}

/// One `virtual_routes` entry:
/// `[blackhole|unreachable|prohibit] PREFIX [via ADDR] [dev NAME] [src ADDR] [table N]
/// [metric N]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualRoute {
    /// Route type.
    pub kind: RouteKind,
    /// Destination.
    pub to: Prefix,
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Output interface; `None`: the instance's interface for a unicast route without a
    /// gateway, else the kernel's choice.
    pub dev: Option<String>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Routing table (default: main).
    pub table: Option<u32>,
    /// Metric (priority).
    pub metric: Option<u32>,
}

impl FromStr for VirtualRoute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace().peekable();
        let kind = match words.peek().copied() {
            Some("blackhole") => RouteKind::Blackhole,
            Some("unreachable") => RouteKind::Unreachable,
            Some("prohibit") => RouteKind::Prohibit,
            _ => RouteKind::Unicast,
        };
        if kind != RouteKind::Unicast {
            words.next();
        }
        let first = words.next().ok_or(
            "empty route; expected \"PREFIX [via ADDR] [dev NAME] [src ADDR] [table N] [metric N]\"",
        )?;
        let to = prefix(first, None)?;
        let v6 = Some(to.addr.is_ipv6());
        let mut r = VirtualRoute {
            kind,
            to,
            via: None,
            dev: None,
            src: None,
            table: None,
            metric: None,
        };
        while let Some(word) = words.next() {
            let value = words.next();
            match word {
                "via" | "gw" => {
                    let p = prefix(value.ok_or("`via` needs an address")?, v6)?;
                    r.via = Some(p.addr);
                }
                "src" => {
                    let p = prefix(value.ok_or("`src` needs an address")?, v6)?;
                    r.src = Some(p.addr);
                }
                "dev" => r.dev = Some(name(word, value)?),
                "table" => r.table = Some(number(word, value)?),
                "metric" | "preference" | "priority" => r.metric = Some(number(word, value)?),
                other => {
                    return Err(format!(
                        "unknown option `{other}`; allowed: via, dev, src, table, metric"
                    ));
                }
            }
        }
        if kind != RouteKind::Unicast && r.via.is_some() {
            return Err("a blackhole/unreachable/prohibit route has no gateway".to_string());
        }
        Ok(r)
    }
}

impl fmt::Display for VirtualRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RouteKind::Unicast => {}
            RouteKind::Blackhole => f.write_str("blackhole ")?,
            RouteKind::Unreachable => f.write_str("unreachable ")?,
            RouteKind::Prohibit => f.write_str("prohibit ")?,
        }
        write!(f, "{}", self.to)?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if let Some(t) = self.table {
            write!(f, " table {t}")?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// One `virtual_rules` entry:
/// `[from PREFIX] [to PREFIX] [iif NAME] [oif NAME] [fwmark N] [priority N] table N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualRule {
    /// IPv6 rule (from the prefixes; IPv4 when none is given).
    pub ipv6: bool,
    /// Source prefix.
    pub from: Option<Prefix>,
    /// Destination prefix.
    pub to: Option<Prefix>,
    /// Incoming interface.
    pub iif: Option<String>,
    /// Outgoing interface.
    pub oif: Option<String>,
    /// Firewall mark.
    pub fwmark: Option<u32>,
    /// Rule priority (order).
    pub priority: Option<u32>,
    /// Table to look up.
    pub table: u32,
}

impl FromStr for VirtualRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut r = VirtualRule {
            ipv6: false,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            priority: None,
            table: 0,
        };
        let mut family: Option<bool> = None;
        let mut words = s.split_whitespace();
        while let Some(word) = words.next() {
            let value = words.next();
            match word {
                "from" | "to" => {
                    let p = prefix(
                        value.ok_or_else(|| format!("`{word}` needs a prefix"))?,
                        family,
                    )?;
                    family = Some(p.addr.is_ipv6());
                    if word == "from" {
                        r.from = Some(p);
                    } else {
                        r.to = Some(p);
                    }
                }
                "iif" => r.iif = Some(name(word, value)?),
                "oif" => r.oif = Some(name(word, value)?),
                "fwmark" => r.fwmark = Some(number(word, value)?),
                "priority" | "pref" | "preference" => r.priority = Some(number(word, value)?),
                "table" | "lookup" => r.table = number(word, value)?,
                other => {
                    return Err(format!(
                        "unknown option `{other}`; allowed: from, to, iif, oif, fwmark, priority, table"
                    ));
                }
            }
        }
        if r.table == 0 {
            return Err("a rule needs `table N` (the table it sends packets to)".to_string());
        }
        r.ipv6 = family.unwrap_or(false);
        Ok(r)
    }
}

impl fmt::Display for VirtualRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = self.from {
            parts.push(format!("from {p}"));
        }
        if let Some(p) = self.to {
            parts.push(format!("to {p}"));
        }
        if let Some(i) = &self.iif {
            parts.push(format!("iif {i}"));
        }
        if let Some(i) = &self.oif {
            parts.push(format!("oif {i}"));
        }
        if let Some(m) = self.fwmark {
            parts.push(format!("fwmark {m}"));
        }
        if let Some(p) = self.priority {
            parts.push(format!("priority {p}"));
        }
        parts.push(format!("table {}", self.table));
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_as_ip_route_writes_them() {
        let r: VirtualRoute = "198.51.100.0/24 via 192.0.2.1 dev eth0 table 100 metric 5"
            .parse()
            .unwrap();
        assert_eq!(r.to.to_string(), "198.51.100.0/24");
        assert_eq!(r.via, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((r.table, r.metric), (Some(100), Some(5)));
        assert_eq!(
            r.to_string(),
            "198.51.100.0/24 via 192.0.2.1 dev eth0 table 100 metric 5"
        );
        let b: VirtualRoute = "blackhole 2001:db8:1::/48".parse().unwrap();
        assert_eq!(b.kind, RouteKind::Blackhole);
        for (bad, why) in [
            ("198.51.100.0/24 via 2001:db8::1", "same family"),
            ("default via 192.0.2.1", "0.0.0.0/0"),
            ("198.51.100.0/33", "out of range"),
            ("198.51.100.0/24 onlink", "unknown option"),
            ("blackhole 198.51.100.0/24 via 192.0.2.1", "no gateway"),
        ] {
            let e = bad.parse::<VirtualRoute>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn rules_need_a_table_and_one_family() {
        let r: VirtualRule = "from 192.0.2.100/32 priority 100 table 100"
            .parse()
            .unwrap();
        assert_eq!(r.to_string(), "from 192.0.2.100/32 priority 100 table 100");
        assert!(!r.ipv6);
        assert!(
            "from 2001:db8::1 table 5"
                .parse::<VirtualRule>()
                .unwrap()
                .ipv6
        );
        assert!(
            "from 192.0.2.1"
                .parse::<VirtualRule>()
                .unwrap_err()
                .contains("table")
        );
        assert!(
            "from 192.0.2.1 to 2001:db8::/32 table 5"
                .parse::<VirtualRule>()
                .unwrap_err()
                .contains("same family")
        );
    }
}
