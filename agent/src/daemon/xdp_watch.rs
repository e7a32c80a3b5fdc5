//! The XDP program must stay on every interface it was attached to: a Backup whose
//! program someone detached (`bpftool link detach`) hears no adverts, takes the virtual
//! addresses while its Master still holds them, and stays a second holder. The kernel
//! refuses `ip link set dev X xdp off` on a program attached through a bpf_link, but
//! not a detach of the link itself, and says nothing when it happens; so the agent
//! looks, at most once a second and only when it is awake anyway (a Backup sleeps
//! while the kernel keeps its down timer), and attaches again. A deaf Backup takes
//! over, wakes for its own adverts, finds its program gone, hears its Master again
//! and hands back.

use super::Agent;

impl Agent {
    /// Attaches the XDP program again wherever it is missing, and says so.
    pub(super) async fn check_xdp(&mut self) {
        let (Some(ours), ifaces) = self.receiver.xdp_attachments() else {
            return;
        };
        for (index, name) in ifaces {
            let there = match self.netlink.xdp_program(index).await {
                Ok(id) => id,
                // Gone or unreadable: the link monitor deals with vanished interfaces.
                Err(_) => continue,
            };
            if there == Some(ours) {
                continue;
            }
            let what = there.map_or("no program".to_owned(), |id| format!("program {id}"));
            match self.receiver.reattach(index) {
                Ok(mode) => tracing::warn!(
                    iface = %name,
                    "vigil's XDP program was detached from {name} ({what} there now): \
                     attached again (xdp {mode})"
                ),
                Err(e) => tracing::error!(
                    iface = %name,
                    "vigil's XDP program was detached from {name} ({what} there now) and \
                     cannot be attached again: {e:#}"
                ),
            }
            self.status_stale = true;
        }
    }
}
