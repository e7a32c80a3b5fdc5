//! Reading vigil's pinned maps the way an operator does: with `bpftool`, by field name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Host;

/// `bpftool -j map dump pinned PATH`, run in `host`, with each entry's BTF-formatted form.
pub fn dump(host: &Host, path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let out = host.exec(&[
        "bpftool",
        "-j",
        "map",
        "dump",
        "pinned",
        &path.to_string_lossy(),
    ])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(json
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.get("formatted").unwrap_or(e).clone())
        .collect())
}

/// The `iface_stats` counters under `pin`, summed over interfaces and CPUs, by name.
pub fn verdict_counters(host: &Host, pin: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut total = BTreeMap::new();
    for entry in dump(host, &pin.join("iface_stats"))? {
        for cpu in entry["values"].as_array().into_iter().flatten() {
            for (k, v) in cpu["value"].as_object().into_iter().flatten() {
                *total.entry(k.clone()).or_insert(0) += v.as_u64().unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// The `vrid_stats` entry of an IPv4 VRID under `pin`.
pub fn vrid_stats(host: &Host, pin: &Path, vrid: u8) -> anyhow::Result<serde_json::Value> {
    dump(host, &pin.join("vrid_stats"))?
        .into_iter()
        .find(|e| e["key"]["vrid"] == vrid && e["key"]["family"] == 4)
        .ok_or_else(|| anyhow::anyhow!("no VRID {vrid} in vrid_stats"))
}
