//! "Nothing lost": which hosts hold a virtual address, sampled in the background while a
//! fault plays out, and the checks on those samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::Host;
use crate::agent::has_address;

/// One sample: when, and the names of the hosts that had the address.
pub type Sample = (Instant, Vec<String>);

/// Samples the holders of `vip` among `hosts` until stopped.
pub struct VipWatch {
    vip: String,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl VipWatch {
    /// Starts sampling (as fast as `ip` answers, about every 10–20 ms).
    pub fn start(hosts: &[Host], vip: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, samples, hosts, vip) = (
                stop.clone(),
                samples.clone(),
                hosts.to_vec(),
                vip.to_owned(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let holders: Vec<String> = hosts
                        .iter()
                        .filter(|h| has_address(h, &vip))
                        .map(|h| h.name.clone())
                        .collect();
                    if let Ok(mut s) = samples.lock() {
                        s.push((at, holders));
                    }
                }
            })
        };
        Self {
            vip: vip.to_owned(),
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until exactly one host holds the address, and returns when.
    pub fn converged(&self, within: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + within;
        let from = Instant::now();
        while Instant::now() < deadline {
            if let Some((at, _)) = self
                .samples()
                .into_iter()
                .rev()
                .find(|(at, h)| *at >= from && h.len() == 1)
            {
                return Ok(at);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{}: never held by exactly one host within {within:?}; last samples: {:?}",
            self.vip,
            self.samples()
                .iter()
                .rev()
                .take(5)
                .map(|s| &s.1)
                .collect::<Vec<_>>()
        )
    }

    /// Keeps sampling for `hold`, then checks that every sample from `from` on saw
    /// exactly one holder, and that it was `holder`; returns how many samples it checked.
    pub fn exactly_one_from(
        &self,
        from: Instant,
        hold: Duration,
        holder: &str,
    ) -> anyhow::Result<usize> {
        std::thread::sleep(hold);
        let count = || self.samples().iter().filter(|(at, _)| *at >= from).count();
        // A busy machine samples slowly: hold on (up to ten times as long) until there
        // are enough samples to judge.
        let until = Instant::now() + hold * 9;
        while count() < 10 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let checked: Vec<Sample> = self
            .samples()
            .into_iter()
            .filter(|(at, _)| *at >= from)
            .collect();
        if checked.len() < 10 {
            bail!("{}: only {} samples in {hold:?}", self.vip, checked.len());
        }
        for (at, holders) in &checked {
            if holders.len() != 1 || holders[0] != holder {
                bail!(
                    "{}: held by {holders:?} {:?} after convergence (want only {holder})",
                    self.vip,
                    at.duration_since(from)
                );
            }
        }
        Ok(checked.len())
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
