//! The link monitor sees `ip link set dev X down/up`, carrier loss and interface removal.

mod netns;

use std::time::Duration;

use futures::StreamExt;
use netns::{IF_A, IF_B, Lab, LabOptions};
use vigil::net::{LinkEvent, LinkMonitor, LinkState, Netlink, OperState};

/// Waits for the first `Changed` event on `name` that satisfies `want`.
async fn wait_for(
    monitor: &mut LinkMonitor,
    name: &str,
    want: impl Fn(&LinkState) -> bool,
) -> LinkState {
    let wait = async {
        while let Some(event) = monitor.next().await {
            if let LinkEvent::Changed(state) = event
                && state.name == name
                && want(&state)
            {
                return state;
            }
        }
        panic!("link monitor stream ended");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no matching event for {name} within 10 s"))
}

#[test]
fn monitor_follows_admin_state_carrier_and_removal() {
    require_root!();
    let lab = Lab::new("lk", LabOptions { dad: false });
    let (a, b) = (lab.a.clone(), lab.b.clone());
    netns::block_on_in(&lab.a, move || async move {
        let (mut monitor, snapshot) = LinkMonitor::start().await.expect("subscribe as root");
        let vg0 = snapshot
            .iter()
            .find(|s| s.name == IF_A)
            .expect("vg0 in the snapshot")
            .clone();
        assert!(vg0.is_up() && vg0.lower_up, "{vg0:?}");
        assert_eq!(vg0.oper, OperState::Up);
        assert!(vg0.mac.is_some());

        let nl = Netlink::connect().expect("rtnetlink socket opens as root");
        assert_eq!(nl.link(vg0.index).await.expect("one-shot query"), vg0);

        netns::ip_in(&a, &["link", "set", "dev", IF_A, "down"]);
        let down = wait_for(&mut monitor, IF_A, |s| !s.admin_up).await;
        assert!(!down.is_up());
        assert_eq!(down.oper, OperState::Down);
        assert_eq!(down.index, vg0.index);

        netns::ip_in(&a, &["link", "set", "dev", IF_A, "up"]);
        let up = wait_for(&mut monitor, IF_A, LinkState::is_up).await;
        assert_eq!(up.oper, OperState::Up);

        // The peer going down takes vg0's carrier with it while vg0 stays admin-up.
        netns::ip_in(&b, &["link", "set", "dev", IF_B, "down"]);
        let no_carrier = wait_for(&mut monitor, IF_A, |s| !s.lower_up).await;
        assert!(no_carrier.admin_up && !no_carrier.is_up(), "{no_carrier:?}");
        // veth reports plain Down for a lost carrier; drivers with a lower device say
        // LowerLayerDown.
        assert!(
            matches!(no_carrier.oper, OperState::Down | OperState::LowerLayerDown),
            "{no_carrier:?}"
        );
        netns::ip_in(&b, &["link", "set", "dev", IF_B, "up"]);
        wait_for(&mut monitor, IF_A, LinkState::is_up).await;

        netns::ip_in(
            &a,
            &[
                "link", "add", "vgx0", "type", "veth", "peer", "name", "vgx1",
            ],
        );
        let added = wait_for(&mut monitor, "vgx0", |_| true).await;
        assert!(!added.admin_up);
        netns::ip_in(&a, &["link", "del", "vgx0"]);
        let removed = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = monitor.next().await {
                if let LinkEvent::Removed { index, name } = event
                    && index == added.index
                {
                    return name;
                }
            }
            panic!("link monitor stream ended");
        })
        .await
        .expect("removal seen within 10 s");
        assert_eq!(removed, "vgx0");
    });
}

#[test]
fn repeated_notifications_are_not_changes() {
    require_root!();
    let lab = Lab::new("lq", LabOptions { dad: false });
    let a = lab.a.clone();
    // The kernel reports carrier and oper state a little after `link set up` (link
    // watch runs deferred): wait for it, or that late report is a real change.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !netns::ip_in(&a, &["link", "show", "dev", IF_A]).contains("state UP") {
        assert!(std::time::Instant::now() < deadline, "{IF_A} never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    netns::block_on_in(&lab.a, move || async move {
        let (mut monitor, _) = LinkMonitor::start().await.expect("subscribe as root");
        // An MTU change makes the kernel send RTM_NEWLINK with the same up/down state.
        netns::ip_in(&a, &["link", "set", "dev", IF_A, "mtu", "1400"]);
        netns::ip_in(&a, &["link", "set", "dev", IF_A, "down"]);
        // Word of address changes (the link going down drops its IPv6 addresses) is not
        // what this test is about.
        let next_link = async {
            loop {
                match monitor.next().await {
                    Some(LinkEvent::Addresses { .. }) => continue,
                    other => return other,
                }
            }
        };
        let first = tokio::time::timeout(Duration::from_secs(10), next_link)
            .await
            .expect("an event within 10 s")
            .expect("stream open");
        match first {
            LinkEvent::Changed(s) => {
                assert_eq!(s.name, IF_A);
                assert!(
                    !s.admin_up,
                    "the MTU change was not reported, the down was: {s:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}
