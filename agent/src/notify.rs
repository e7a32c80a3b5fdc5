//! Notify scripts (`notify_master`, `notify_backup`, `notify_fault`, `notify_stop` and
//! `notify`), run as keepalived runs them: the state's own script first, then `notify`
//! with `INSTANCE <name> <state> <priority>` (`GROUP <name> <state> <priority>` for a
//! sync group's own scripts).
//!
//! Each instance has one queue task, so its scripts run one at a time in the order of
//! its transitions, while the election goes on: queuing never waits.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config;
use crate::exec::{self, CommandLine, RateLimit};
use crate::vrrp::State;

/// A notify script still running after this is killed (with its process group).
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

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
    tx: Option<mpsc::UnboundedSender<Job>>,
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
            let (tx, rx) = mpsc::unbounded_channel();
            let run_as = exec::run_as(user);
            n.task = Some(tokio::spawn(queue(instance.to_owned(), run_as, rx)));
            n.tx = Some(tx);
        }
        n
    }

    /// Queues the scripts for entering `to` (Initialize means stopped) at `priority`.
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
        if let Some(cmd) = own {
            let _ = tx.send(Job {
                what,
                cmd: cmd.clone(),
                args: Vec::new(),
            });
        }
        if let Some(cmd) = &self.any {
            let _ = tx.send(Job {
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
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut log = RateLimit::new(20, Duration::from_secs(60));
    while let Some(job) = rx.recv().await {
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
