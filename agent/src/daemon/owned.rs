//! The record of the virtual addresses this agent added, kept on disk so that a run
//! after a crash removes exactly those — and never an address someone else put there.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One address vigil added.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OwnedAddress {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub addr: std::net::IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// The set of added addresses and the file that mirrors it.
#[derive(Debug)]
pub struct OwnedAddresses {
    path: PathBuf,
    set: BTreeSet<OwnedAddress>,
}

impl OwnedAddresses {
    /// An empty record kept at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            set: BTreeSet::new(),
        }
    }

    /// What a previous run left in `path`: empty when there is no file; empty, with a
    /// warning, when it cannot be read or parsed (the kernel's own tag on each address,
    /// see `net::address::VIGIL_ADDRESS_PROTO`, still finds them).
    pub fn leftovers(path: &Path) -> Vec<OwnedAddress> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot read the record of added addresses: {e}");
                return Vec::new();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(path = %path.display(), "record of added addresses is corrupt ({e}); ignored");
                Vec::new()
            }
        }
    }

    /// Whether vigil added this address.
    pub fn contains(&self, a: &OwnedAddress) -> bool {
        self.set.contains(a)
    }

    /// Records an added address.
    pub fn insert(&mut self, a: OwnedAddress) {
        if self.set.insert(a) {
            self.save();
        }
    }

    /// Forgets a removed address.
    pub fn remove(&mut self, a: &OwnedAddress) {
        if self.set.remove(a) {
            self.save();
        }
    }

    fn save(&self) {
        let list: Vec<&OwnedAddress> = self.set.iter().collect();
        let result = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = self.path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "cannot record added addresses: {e}");
        }
    }

    /// Removes the file (clean exit: every address is gone).
    pub fn clear(&mut self) {
        self.set.clear();
        let _ = std::fs::remove_file(&self.path);
    }
}
