//! The agent's last act on a panic: remove the virtual addresses it added, so a crash
//! never leaves a VIP that another node also holds. The hook reads the same record a
//! restarted agent would (`<runtime dir>/<router_id>.addresses`); if the hook itself
//! cannot finish, the record stays for the next start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static RECORD: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Installs the hook for the agent whose address record is in `runtime_dir`.
pub fn arm(runtime_dir: &Path, router_id: &str) {
    let path = runtime_dir.join(format!("{router_id}.addresses"));
    if let Ok(mut r) = RECORD.lock() {
        *r = Some(path);
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let record = RECORD.lock().ok().and_then(|r| r.clone());
        if let Some(path) = record {
            release(path);
        }
    }));
}

/// Leaves the hook in place but with nothing to do (after a clean stop removed all).
pub fn disarm() {
    if let Ok(mut r) = RECORD.lock() {
        *r = None;
    }
}

/// Removes what the record lists, on a thread of its own: the panicking thread may be
/// inside the agent's runtime, where another cannot be started.
fn release(path: PathBuf) {
    let worker = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let netlink = crate::net::Netlink::connect().ok()?;
            tracing::error!("panic: removing the virtual addresses this agent added");
            let removal = crate::daemon::remove_leftovers(&netlink, &path);
            tokio::time::timeout(std::time::Duration::from_secs(3), removal)
                .await
                .ok()
        })
    });
    let _ = worker.join();
}
