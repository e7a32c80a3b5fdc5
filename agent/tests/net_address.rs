//! Virtual addresses through rtnetlink, checked against `ip -o addr` in a namespace.

mod netns;

use std::net::IpAddr;

use netns::{IF_A, Lab, LabOptions};
use vigil::net::{AddressError, Interface, Netlink, VirtualAddress};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal is an address")
}

/// The `ip -o addr show dev vg0` line for `addr/len`, if any.
fn ip_line(lab: &Lab, family: &str, prefix: &str) -> Option<String> {
    lab.ip_a(&[family, "-o", "addr", "show", "dev", IF_A])
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == prefix))
        .map(str::to_owned)
}

#[test]
fn ipv4_add_with_label_is_idempotent_and_removable() {
    require_root!();
    let lab = Lab::new("a4", LabOptions { dad: true });
    let ns = lab.a.clone();
    let (index, results) = netns::block_on_in(&ns, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists in the lab");
        let vip = VirtualAddress::new(ip("192.0.2.100"), 24).with_label("vg0:1");
        let added = nl.add_address(&iface, &vip).await.expect("add");
        let present = nl.has_address(&iface, vip.addr).await.expect("has");
        let listed = nl
            .addresses(&iface)
            .await
            .expect("list")
            .into_iter()
            .find(|a| a.addr == vip.addr);
        let added_again = nl.add_address(&iface, &vip).await.expect("second add");
        (iface.index, (added, present, listed, added_again))
    });
    let (added, present, listed, added_again) = results;
    assert!(added, "first add reports a change");
    assert!(present);
    assert!(
        !added_again,
        "adding an existing address is no change and no error"
    );
    let listed = listed.expect("the VIP is in the dump");
    assert_eq!(listed.prefix_len, 24);
    assert_eq!(listed.label.as_deref(), Some("vg0:1"));
    assert!(
        listed.secondary,
        "a VIP inside 192.0.2.1/24's subnet is secondary"
    );

    let line = ip_line(&lab, "-4", "192.0.2.100/24").expect("ip -o addr shows the VIP");
    assert!(
        // `ip -o` ends the first line with the label, then a backslash.
        line.split('\\')
            .next()
            .and_then(|l| l.split_whitespace().last())
            == Some("vg0:1"),
        "label missing in {line:?}"
    );
    let link = lab.ip_a(&["-o", "link", "show", "dev", IF_A]);
    assert!(
        link.starts_with(&format!("{index}: ")),
        "ifindex {index} vs {link:?}"
    );

    let (removed, removed_again, present) = netns::block_on_in(&ns, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let vip = VirtualAddress::new(ip("192.0.2.100"), 24).with_label("vg0:1");
        let removed = nl.remove_address(&iface, &vip).await.expect("remove");
        let removed_again = nl
            .remove_address(&iface, &vip)
            .await
            .expect("second remove");
        let present = nl.has_address(&iface, vip.addr).await.expect("has");
        (removed, removed_again, present)
    });
    assert!(removed, "first remove reports a change");
    assert!(
        !removed_again,
        "removing a missing address is no change and no error"
    );
    assert!(!present);
    assert!(ip_line(&lab, "-4", "192.0.2.100/24").is_none());
    assert!(
        ip_line(&lab, "-4", "192.0.2.1/24").is_some(),
        "the primary is untouched"
    );
}

#[test]
fn ipv4_remove_leaves_other_prefixes_alone() {
    require_root!();
    let lab = Lab::new("p4", LabOptions { dad: true });
    // Someone else's 198.51.100.7/32; vigil's config says /24: not the same address entry.
    lab.ip_a(&["addr", "add", "198.51.100.7/32", "dev", IF_A]);
    let removed = netns::block_on_in(&lab.a.clone(), || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        nl.remove_address(&iface, &VirtualAddress::new(ip("198.51.100.7"), 24))
            .await
            .expect("remove")
    });
    assert!(!removed);
    assert!(ip_line(&lab, "-4", "198.51.100.7/32").is_some());
}

#[test]
fn ipv6_add_skips_dad_and_is_idempotent() {
    require_root!();
    let lab = Lab::new("a6", LabOptions { dad: true });
    let ns = lab.a.clone();
    let (added, added_again, listed) = netns::block_on_in(&ns, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let vip = VirtualAddress::new(ip("2001:db8::100"), 64);
        let added = nl.add_address(&iface, &vip).await.expect("add");
        let added_again = nl.add_address(&iface, &vip).await.expect("second add");
        let listed = nl
            .addresses(&iface)
            .await
            .expect("list")
            .into_iter()
            .find(|a| a.addr == vip.addr);
        (added, added_again, listed)
    });
    // Checked at once: with DAD the address would stay tentative for about a second.
    let line = ip_line(&lab, "-6", "2001:db8::100/64").expect("ip -o addr shows the VIP");
    assert!(!line.contains("tentative"), "VIP is tentative: {line:?}");
    assert!(line.contains("nodad"), "VIP lacks nodad: {line:?}");
    assert!(added);
    assert!(!added_again);
    let listed = listed.expect("the VIP is in the dump");
    assert!(
        listed.nodad && !listed.tentative && !listed.dad_failed,
        "{listed:?}"
    );
    assert_eq!(listed.prefix_len, 64);

    // The contrast that makes the check above mean something: DAD is on in this lab.
    lab.ip_a(&["addr", "add", "2001:db8::200/64", "dev", IF_A]);
    let plain = ip_line(&lab, "-6", "2001:db8::200/64").expect("plain address present");
    assert!(
        plain.contains("tentative"),
        "DAD is not active here: {plain:?}"
    );

    let (removed, removed_again) = netns::block_on_in(&ns, || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let vip = VirtualAddress::new(ip("2001:db8::100"), 64);
        (
            nl.remove_address(&iface, &vip).await.expect("remove"),
            nl.remove_address(&iface, &vip)
                .await
                .expect("second remove"),
        )
    });
    assert!(removed);
    assert!(!removed_again);
    assert!(ip_line(&lab, "-6", "2001:db8::100/64").is_none());
    assert!(ip_line(&lab, "-6", "2001:db8::200/64").is_some());
}

#[test]
fn lookups_and_refusals_are_typed() {
    require_root!();
    let lab = Lab::new("er", LabOptions { dad: true });
    netns::block_on_in(&lab.a.clone(), || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        match nl.interface("nosuch0").await {
            Err(AddressError::NoSuchInterface(name)) => assert_eq!(name, "nosuch0"),
            other => panic!("expected NoSuchInterface, got {other:?}"),
        }
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let by_index = nl.interface_by_index(iface.index).await.expect("by index");
        assert_eq!(by_index, iface);

        let bad_label = VirtualAddress::new(ip("192.0.2.101"), 24).with_label("eth9:1");
        let err = nl
            .add_address(&iface, &bad_label)
            .await
            .expect_err("bad label");
        assert!(matches!(err, AddressError::Invalid { .. }), "{err:?}");
        assert!(
            err.to_string().contains("vg0"),
            "error names the interface: {err}"
        );
        let v6_label = VirtualAddress::new(ip("2001:db8::5"), 64).with_label("vg0:2");
        assert!(matches!(
            nl.add_address(&iface, &v6_label).await,
            Err(AddressError::Invalid { .. })
        ));

        let ghost = Interface {
            index: 999_999,
            name: "ghost0".into(),
        };
        let vip = VirtualAddress::new(ip("192.0.2.102"), 24);
        assert!(matches!(
            nl.add_address(&ghost, &vip).await,
            Err(AddressError::NoSuchInterface(n)) if n == "ghost0"
        ));
        assert!(matches!(
            nl.remove_address(&ghost, &vip).await,
            Err(AddressError::NoSuchInterface(n)) if n == "ghost0"
        ));
    });
}

#[test]
fn primary_ipv4_and_link_local_lookup() {
    require_root!();
    let lab = Lab::new("pr", LabOptions { dad: false });
    lab.ip_a(&["addr", "add", "192.0.2.50/24", "dev", IF_A]); // secondary
    lab.ip_a(&["addr", "add", "198.51.100.10/24", "dev", IF_A]); // another primary
    let expected_ll = lab.wait_link_local(&lab.a, IF_A);
    let (first, excluded, ll) = netns::block_on_in(&lab.a.clone(), || async {
        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        let iface = nl.interface(IF_A).await.expect("vg0 exists");
        let first = nl.primary_ipv4(&iface, &[]).await.expect("lookup");
        let excluded = nl
            .primary_ipv4(&iface, &["192.0.2.1".parse().expect("literal")])
            .await
            .expect("lookup");
        let ll = nl.ipv6_link_local(&iface).await.expect("lookup");
        (first, excluded, ll)
    });
    assert_eq!(first, Some("192.0.2.1".parse().expect("literal")));
    assert_eq!(
        excluded,
        Some("198.51.100.10".parse().expect("literal")),
        "a secondary is never the primary"
    );
    assert_eq!(ll, Some(expected_ll));
}
