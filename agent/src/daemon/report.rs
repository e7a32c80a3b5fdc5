//! What the agent tells about itself: the status snapshot (`vigil status`, metrics), the
//! SIGUSR1/SIGUSR2 dumps, and the one-line `STATUS=` systemd shows.

use std::collections::BTreeMap;

use super::Agent;
use crate::clock;
use crate::control;
use crate::vrrp::State;

impl Agent {
    pub(super) fn status(&self) -> serde_json::Value {
        let now = clock::now();
        serde_json::json!({
            "schema_version": control::STATUS_SCHEMA,
            "version": env!("CARGO_PKG_VERSION"),
            "router_id": self.config.global.router_id,
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "datapath": self.receiver.describe(),
            "down_timers": self.receiver.down_timers().describe(),
            "scheduling": self.scheduling,
            "datapath_fallback": self.receiver.fallback(),
            "last_reload": self.last_reload.map(|(success, at)| serde_json::json!({
                "success": success,
                "unix_time": unix_time(at),
            })),
            "datapath_counters": self.receiver.counters(),
            "config": self.path.display().to_string(),
            "instances": self.instances.values().filter_map(|i| {
                let router = self.endpoint.router(&i.key)?;
                // The datapath's count of valid adverts for the VRID (the kernel's on
                // XDP), not the few the election had to hear.
                let rx = self
                    .receiver
                    .vrid_stats(&i.key)
                    .or_else(|| self.endpoint.datapath_state(&i.key).copied())
                    .map_or(0, |s| s.received);
                let mut s = i.status(now, router, rx, self.adverts.sent(&i.key));
                let kernel = self.endpoint.kernel_timer(&i.key);
                s["down_timer"] = if kernel.armed { "kernel" } else { "agent" }.into();
                s["kernel_silences"] = kernel.silences.into();
                s["tracking"] = self.tracker.status(&i.cfg);
                s["sync_group"] = self.groups.group_of(&i.name).into();
                Some(s)
            }).chain(self.waiting.iter().map(|(name, w)| serde_json::json!({
                "instance": name,
                "interface": w.cfg.interface,
                "vrid": w.cfg.vrid,
                "version": w.cfg.version.number(),
                "state": State::Fault.to_string(),
                "priority": w.cfg.priority,
                "effective_priority": 0,
                "master": null,
                "last_transition": null,
                "adverts_rx": 0,
                "adverts_tx": 0,
                "transitions": [],
                "fault": w.reason,
                "waiting": true,
                "tracking": self.tracker.status(&w.cfg),
            }))).collect::<Vec<_>>(),
            "sync_groups": self.groups.status(&self.instances, &self.endpoint),
            "bfd": self.bfd.as_ref().map(|b| b.status()).unwrap_or_default(),
            "bfd_refused": self.bfd.as_ref().map(|b| b.refused()).unwrap_or_default(),
            "bfd_limits": {
                "max_sessions": self.config.global.bfd_max_sessions,
                "max_sessions_per_interface": self.config.global.bfd_max_sessions_per_interface,
            },
        })
    }

    /// Counters only (SIGUSR2), as keepalived's stats file has them.
    pub(super) fn stats(&self) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "schema_version": control::STATUS_SCHEMA,
            "router_id": status["router_id"],
            "uptime_seconds": status["uptime_seconds"],
            "datapath": status["datapath"],
            "datapath_counters": status["datapath_counters"],
            "instances": status["instances"].as_array().into_iter().flatten().map(|i| serde_json::json!({
                "instance": i["instance"],
                "state": i["state"],
                "adverts_rx": i["adverts_rx"],
                "adverts_tx": i["adverts_tx"],
                "transitions": i["transitions"],
                "split_brain_adverts": i["split_brain_adverts"],
                "removed_while_backup": i["removed_while_backup"],
                "restored_while_master": i["restored_while_master"],
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes `<runtime dir>/<router_id>.<what>` (mode 0600) for SIGUSR1 / SIGUSR2.
    pub(super) fn dump(&self, what: &str, value: serde_json::Value) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self
            .runtime_dir
            .join(format!("{}.{what}", self.config.global.router_id));
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                let text = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
                f.write_all(text.as_bytes())?;
                f.write_all(b"\n")
            });
        match result {
            Ok(()) => tracing::info!(path = %path.display(), "{what} written"),
            Err(e) => tracing::warn!(path = %path.display(), "cannot write {what}: {e}"),
        }
    }

    /// Tells systemd a one-line summary (`systemctl status` shows it) when it changed.
    pub(super) fn notify_status(&mut self) {
        // Hundreds of instances wake the loop thousands of times a second; the line
        // changes only with a transition or the set of instances.
        if !std::mem::take(&mut self.status_stale) {
            return;
        }
        let mut counts: BTreeMap<State, usize> = BTreeMap::new();
        for inst in self.instances.values() {
            let state = self
                .endpoint
                .router(&inst.key)
                .map_or(State::Initialize, |r| r.state());
            *counts.entry(state).or_default() += 1;
        }
        if !self.waiting.is_empty() {
            *counts.entry(State::Fault).or_default() += self.waiting.len();
        }
        let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut line = format!(
            "{} instance(s): {}; datapath {}",
            self.instances.len() + self.waiting.len(),
            if states.is_empty() {
                "none".to_owned()
            } else {
                states.join(", ")
            },
            self.receiver.describe()
        );
        if let Some(why) = self.receiver.fallback() {
            line.push_str(&format!(": {why}"));
        }
        let line = line.replace('\n', " ");
        if line != self.status_line {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&line)]);
            self.status_line = line;
        }
    }
}

/// Seconds since the Unix epoch, for status and metrics.
fn unix_time(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
