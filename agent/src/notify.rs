//! Notify scripts (`notify_master`, `notify_backup`, `notify_fault`, `notify_stop` and
//! `notify`), run as keepalived runs them: the state's own script first, then `notify`
//! with `INSTANCE <name> <state> <priority>` (`GROUP <name> <state> <priority>` for a
//! sync group's own scripts).
//!
//! Each instance has one queue task, so its scripts run one at a time in the order of
//! its transitions, while the election goes on: queuing never waits. The queue holds
//! only the newest state's scripts: when an instance flaps faster than its scripts run,
//! the states it has already left are skipped, so the script that runs last is always
//! the one for the state the instance is in (never a stale `notify_master` after it
//! became Backup), and a storm of transitions cannot queue minutes of work.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config;
use crate::exec::{self, CommandLine, RateLimit};
use crate::vrrp::State;

/// A notify script still running after this is killed (with its process group).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Job {
    what: &'static str,
    cmd: CommandLine,
    args: Vec<String>,
}

/// The notify queue of one instance (or sync group).
pub struct Notifier {
    /// `INSTANCE` or `GROUP`: the first argument of the generic `notify`.
    kind: &'static str,
    instance: String,
    master: Option<CommandLine>,
    backup: Option<CommandLine>,
    fault: Option<CommandLine>,
    stop: Option<CommandLine>,
    any: Option<CommandLine>,
    tx: Option<watch::Sender<Vec<Job>>>,
    task: Option<JoinHandle<()>>,
}

impl Notifier {
    /// The queue for `instance`; a task is started only if it has notify scripts.
    pub fn new(instance: &str, cfg: &config::Instance, user: Option<&str>) -> Self {
        let cmds = [
            &cfg.notify_master,
            &cfg.notify_backup,
            &cfg.notify_fault,
            &cfg.notify_stop,
            &cfg.notify,
        ];
        Self::build("INSTANCE", instance, cmds, user)
    }

    /// The queue for sync group `group`; its generic `notify` gets `GROUP <name> ...`.
    pub fn for_group(group: &str, cfg: &config::SyncGroup, user: Option<&str>) -> Self {
        let cmds = [
            &cfg.notify_master,
            &cfg.notify_backup,
            &cfg.notify_fault,
            &cfg.notify_stop,
            &cfg.notify,
        ];
        Self::build("GROUP", group, cmds, user)
    }

    fn build(
        kind: &'static str,
        instance: &str,
        [master, backup, fault, stop, any]: [&Option<String>; 5],
        user: Option<&str>,
    ) -> Self {
        let parse = |c: &Option<String>| c.as_deref().map(CommandLine::parse);
        let mut n = Self {
            kind,
            instance: instance.to_owned(),
            master: parse(master),
            backup: parse(backup),
            fault: parse(fault),
            stop: parse(stop),
            any: parse(any),
            tx: None,
            task: None,
        };
        let configured = [&n.master, &n.backup, &n.fault, &n.stop, &n.any]
            .iter()
            .any(|c| c.is_some());
        if configured {
            let (tx, rx) = watch::channel(Vec::new());
            let run_as = exec::run_as(user);
            n.task = Some(tokio::spawn(queue(instance.to_owned(), run_as, rx)));
            n.tx = Some(tx);
        }
        n
    }

    /// Queues the scripts for entering `to` (Initialize means stopped) at `priority`,
    /// replacing those of a state whose scripts have not started yet.
    pub fn state(&self, to: State, priority: u8) {
        let Some(tx) = &self.tx else {
            return;
        };
        let (own, what, word) = match to {
            State::Master => (&self.master, "notify_master", "MASTER"),
            State::Backup => (&self.backup, "notify_backup", "BACKUP"),
            State::Fault => (&self.fault, "notify_fault", "FAULT"),
            State::Initialize => (&self.stop, "notify_stop", "STOP"),
        };
        let mut jobs = Vec::new();
        if let Some(cmd) = own {
            jobs.push(Job {
                what,
                cmd: cmd.clone(),
                args: Vec::new(),
            });
        }
        if let Some(cmd) = &self.any {
            jobs.push(Job {
                what: "notify",
                cmd: cmd.clone(),
                args: vec![
                    self.kind.to_owned(),
                    self.instance.clone(),
                    word.to_owned(),
                    priority.to_string(),
                ],
            });
        }
        // Sent even when empty: a state without scripts still supersedes the last one's.
        let replaced = tx.send_replace(jobs);
        if !replaced.is_empty() && !tx.is_closed() {
            tracing::debug!(instance = %self.instance, "notify: scripts of an earlier state superseded");
        }
    }

    /// Closes the queue; the returned task ends when what is queued has run.
    pub fn close(&mut self) -> Option<JoinHandle<()>> {
        self.tx = None;
        self.task.take()
    }
}

async fn queue(
    instance: String,
    run_as: Result<Option<exec::RunAs>, String>,
    mut rx: watch::Receiver<Vec<Job>>,
) {
    let mut log = RateLimit::new(20, Duration::from_secs(60));
    // Ends when the notifier is closed and its last state's scripts have run.
    while rx.changed().await.is_ok() {
        // A state's own script and `notify` run as a pair once started; states the
        // instance left before their turn came are skipped (the watch keeps only the
        // newest).
        let jobs = rx.borrow_and_update().clone();
        for job in jobs {
            let user = match &run_as {
                Ok(u) => *u,
                Err(e) => {
                    // Never fall back to root.
                    tracing::error!(instance = %instance, "{} not run: {e}", job.what);
                    continue;
                }
            };
            let f = exec::run(&job.cmd, &job.args, user, NOTIFY_TIMEOUT).await;
            let who = format!("{} {instance}", job.what);
            exec::log_output(&who, &f.output, &mut log);
            if f.outcome.success() {
                tracing::info!(instance = %instance, "{} ran: {} {}", job.what, job.cmd, job.args.join(" "));
            } else {
                tracing::warn!(instance = %instance, "{} {} {}: {}", job.what, job.cmd, job.args.join(" "), f.outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance_with(notify: &str) -> config::Instance {
        let text = format!(
            "[instances.web]\ninterface = \"eth0\"\nvrid = 51\npriority = 100\n\
             virtual_addresses = [\"192.0.2.100/24\"]\nnotify = \"{notify}\"\n"
        );
        let cfg = config::parse(&text, "t.toml").expect("valid config");
        cfg.instances["web"].clone()
    }

    #[tokio::test]
    async fn a_storm_of_transitions_runs_only_the_newest_state_after_the_running_one() {
        let dir = std::env::temp_dir().join(format!("vigil-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("log");
        let script = dir.join("n.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$3\" >> {}\nsleep 0.2\n", log.display()),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let mut n = Notifier::new("web", &instance_with(&script.display().to_string()), None);
        n.state(State::Master, 100);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // 100 flaps while the first script runs: only the last state may follow it.
        for i in 0..100 {
            n.state(
                if i % 2 == 0 {
                    State::Backup
                } else {
                    State::Master
                },
                100,
            );
        }
        n.state(State::Backup, 100);
        let task = n.close().expect("a queue task");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("queue drains")
            .expect("task ends");
        let ran = std::fs::read_to_string(&log).expect("log");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ran, "MASTER\nBACKUP\n");
    }
}
