//! Accept_Mode False (RFC 5798 §6.1, §6.4.3): a Master that is not the address owner
//! "MUST NOT accept packets addressed to the IPvX address(es) associated with the
//! virtual router". The kernel accepts whatever is addressed to a local address, so, as
//! keepalived does for `no_accept` (and `vrrp_strict`), one nftables table drops input
//! to those addresses and output from them, with Neighbor Discovery let through: the
//! Master must still answer for its addresses (RFC 5798 §6.4.3), and the kernel's
//! solicited Neighbor Advertisements come from the address itself.
//!
//! The set holds the addresses of every such instance whatever its state: while an
//! address is not on the host (Backup, Fault) no packet to or from it reaches these
//! hooks, so transitions need not touch the table, and the rules are in place before
//! the first address is added.

use std::net::IpAddr;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The nftables table (family `inet`) vigil owns.
pub const TABLE: &str = "vigil";

/// Why the table could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum NoAcceptError {
    /// `nft` could not be run (not installed?).
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    /// `nft` refused the ruleset.
    #[error("nft failed: {0}")]
    Nft(String),
}

/// The ruleset that replaces vigil's table atomically: the table is created empty if
/// missing, deleted, and written anew in one transaction.
pub fn ruleset(addresses: &[IpAddr]) -> String {
    let mut v4: Vec<String> = Vec::new();
    let mut v6: Vec<String> = Vec::new();
    for a in addresses {
        let list = if a.is_ipv4() { &mut v4 } else { &mut v6 };
        let text = a.to_string();
        if !list.contains(&text) {
            list.push(text);
        }
    }
    let set = |name: &str, ty: &str, elements: &[String]| {
        let mut s = format!("  set {name} {{\n    type {ty}\n");
        if !elements.is_empty() {
            s += &format!("    elements = {{ {} }}\n", elements.join(", "));
        }
        s + "  }\n"
    };
    // Neighbor Discovery first: a Neighbor Solicitation may be sent to the address
    // itself (unicast NUD), and the kernel's answer comes from it.
    const ND: &str = "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n";
    format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n{}{}  \
         chain input {{\n    type filter hook input priority filter - 1; policy accept;\n{ND}    \
         ip daddr @no_accept4 drop\n    ip6 daddr @no_accept6 drop\n  }}\n  \
         chain output {{\n    type filter hook output priority filter - 1; policy accept;\n{ND}    \
         ip saddr @no_accept4 drop\n    ip6 saddr @no_accept6 drop\n  }}\n}}\n",
        set("no_accept4", "ipv4_addr", &v4),
        set("no_accept6", "ipv6_addr", &v6),
    )
}

/// The ruleset that removes vigil's table, present or not.
pub fn removal() -> String {
    format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
}

/// Feeds `rules` to `nft -f -`.
pub async fn run_nft(rules: &str) -> Result<(), NoAcceptError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NoAcceptError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .await
            .map_err(NoAcceptError::Spawn)?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(NoAcceptError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NoAcceptError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_go_in_their_sets_once() {
        let a: Vec<IpAddr> = ["192.0.2.100", "2001:db8::100", "192.0.2.100", "192.0.2.101"]
            .iter()
            .map(|s| s.parse().expect("literal address"))
            .collect();
        let r = ruleset(&a);
        assert!(r.starts_with("table inet vigil {}\ndelete table inet vigil\n"));
        assert!(r.contains("elements = { 192.0.2.100, 192.0.2.101 }"), "{r}");
        assert!(r.contains("elements = { 2001:db8::100 }"), "{r}");
        assert!(r.contains("ip daddr @no_accept4 drop"));
        assert!(r.contains("ip6 saddr @no_accept6 drop"));
        // Neighbor Discovery is let through before the drops, both ways.
        let nd = r.matches("nd-neighbor-solicit").count();
        assert_eq!(nd, 2);
        assert!(r.find("nd-neighbor-solicit") < r.find("ip daddr @no_accept4"));
    }

    #[test]
    fn an_empty_family_has_a_set_without_elements() {
        let r = ruleset(&["192.0.2.100".parse().expect("literal address")]);
        assert_eq!(r.matches("elements").count(), 1, "{r}");
        assert!(
            r.contains("set no_accept6 {\n    type ipv6_addr\n  }"),
            "{r}"
        );
    }
}
