//! The file as serde sees it: structure and basic types only, each value with its span.
//!
//! Ranges, cross references and formats are checked in `validate`, so that all such
//! problems are reported together; serde stops at the first structural one.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::bfd::{RawBfdSession, RawBfdTimers};
use super::duration::RawDuration;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub global: Option<S<RawGlobal>>,
    #[serde(default)]
    pub scripts: BTreeMap<S<String>, S<RawScript>>,
    #[serde(default)]
    pub instances: BTreeMap<S<String>, S<RawInstance>>,
    #[serde(default)]
    pub bfd: BTreeMap<S<String>, S<RawBfdSession>>,
    #[serde(default)]
    pub processes: BTreeMap<S<String>, S<RawProcess>>,
    #[serde(default)]
    pub sync_groups: BTreeMap<S<String>, S<RawSyncGroup>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProcess {
    pub name: S<String>,
    pub command_line: Option<S<String>>,
    pub command_match: Option<S<String>>,
    pub quorum: Option<S<i64>>,
    pub quorum_max: Option<S<i64>>,
    pub weight: Option<S<i64>>,
    pub delay: Option<S<RawDuration>>,
    pub fork_delay: Option<S<RawDuration>>,
    pub terminate_delay: Option<S<RawDuration>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSyncGroup {
    pub instances: S<Vec<S<String>>>,
    #[serde(default)]
    pub track_scripts: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_interfaces: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_files: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_processes: Vec<S<RawTrack>>,
    pub notify_master: Option<S<String>>,
    pub notify_backup: Option<S<String>>,
    pub notify_fault: Option<S<String>>,
    pub notify_stop: Option<S<String>>,
    pub notify: Option<S<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub router_id: Option<S<String>>,
    pub control_socket: Option<S<String>>,
    pub bpf_pin_dir: Option<S<String>>,
    pub xdp: Option<S<String>>,
    pub kernel_timers: Option<S<bool>>,
    pub realtime_priority: Option<S<i64>>,
    pub metrics: Option<S<String>>,
    pub nonlocal_bind: Option<S<bool>>,
    pub script_user: Option<S<String>>,
    pub garp_master_delay: Option<S<RawDuration>>,
    pub garp_master_repeat: Option<S<i64>>,
    pub garp_master_refresh: Option<S<RawDuration>>,
    pub garp_master_refresh_repeat: Option<S<i64>>,
    pub garp_lower_prio_delay: Option<S<RawDuration>>,
    pub garp_lower_prio_repeat: Option<S<i64>>,
    pub bfd: Option<S<RawBfdTimers>>,
    pub bfd_max_sessions: Option<S<i64>>,
    pub bfd_max_sessions_per_interface: Option<S<i64>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScript {
    pub command: S<String>,
    pub interval: Option<S<RawDuration>>,
    pub timeout: Option<S<RawDuration>>,
    pub weight: Option<S<i64>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub user: Option<S<String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    pub interface: S<String>,
    pub vrid: S<i64>,
    pub priority: Option<S<i64>>,
    pub initial_state: Option<S<String>>,
    pub version: Option<S<i64>>,
    pub advert_interval: Option<S<RawDuration>>,
    pub auth_pass: Option<S<String>>,
    pub virtual_addresses: S<Vec<S<String>>>,
    pub preempt: Option<S<bool>>,
    pub preempt_delay: Option<S<RawDuration>>,
    pub down_timer_adverts: Option<S<i64>>,
    pub unicast_src_ip: Option<S<String>>,
    #[serde(default)]
    pub unicast_peers: Vec<S<String>>,
    pub accept: Option<S<bool>>,
    pub v3_checksum_as_v2: Option<S<bool>>,
    #[serde(default)]
    pub track_scripts: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_interfaces: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_files: Vec<S<RawTrack>>,
    #[serde(default)]
    pub track_processes: Vec<S<RawTrack>>,
    #[serde(default)]
    pub excluded_addresses: Vec<S<String>>,
    #[serde(default)]
    pub virtual_routes: Vec<S<String>>,
    #[serde(default)]
    pub virtual_rules: Vec<S<String>>,
    pub use_vmac: Option<S<bool>>,
    pub vmac_interface: Option<S<String>>,
    pub vmac_xmit_base: Option<S<bool>>,
    pub notify_master: Option<S<String>>,
    pub notify_backup: Option<S<String>>,
    pub notify_fault: Option<S<String>>,
    pub notify_stop: Option<S<String>>,
    pub notify: Option<S<String>>,
    pub garp_master_delay: Option<S<RawDuration>>,
    pub garp_master_repeat: Option<S<i64>>,
    pub garp_master_refresh: Option<S<RawDuration>>,
    pub garp_master_refresh_repeat: Option<S<i64>>,
    pub garp_lower_prio_delay: Option<S<RawDuration>>,
    pub garp_lower_prio_repeat: Option<S<i64>>,
    pub bfd: Option<S<RawBfdTimers>>,
    #[serde(default)]
    pub track_bfd: Vec<S<RawTrack>>,
}

/// An entry of `track_scripts`, `track_interfaces`, `track_files` or `track_processes`: either just the
/// name (`"check_web"`) or a table with the name and a weight
/// (`{ script = "check_web", weight = -20 }`).
#[derive(Debug)]
pub(crate) struct RawTrack {
    pub name: String,
    /// Span of the name when given in a table; `None` for the plain string form.
    pub name_span: Option<Range<usize>>,
    /// Which key named it in the table form (`script`, `interface`, `path`, `process`).
    pub key: Option<&'static str>,
    pub weight: Option<S<i64>>,
}

/// The table form; validation checks that the list uses its own name key.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackTable {
    script: Option<S<String>>,
    interface: Option<S<String>>,
    path: Option<S<String>>,
    bfd: Option<S<String>>,
    process: Option<S<String>>,
    weight: Option<S<i64>>,
}

impl<'de> Deserialize<'de> for RawTrack {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTrack;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a name, or a table such as { script = \"NAME\", weight = -20 } \
                     (`interface = ` for track_interfaces, `path = ` for track_files)",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTrack, E> {
                Ok(RawTrack {
                    name: v.to_string(),
                    name_span: None,
                    key: None,
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTrack, A::Error> {
                let t = TrackTable::deserialize(MapAccessDeserializer::new(map))?;
                let named = [
                    ("script", t.script),
                    ("interface", t.interface),
                    ("path", t.path),
                    ("bfd", t.bfd),
                    ("process", t.process),
                ];
                let mut given = named.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)));
                let (key, name) = given.next().ok_or_else(|| {
                    de::Error::custom(
                        "missing the name: `script = \"NAME\"` (track_scripts), \
                         `interface = \"NAME\"` (track_interfaces), `path = \"FILE\"` (track_files) \
                         or `process = \"NAME\"` (track_processes)",
                    )
                })?;
                if let Some((other, _)) = given.next() {
                    return Err(de::Error::custom(format!(
                        "both `{key}` and `{other}` given; an entry names one thing"
                    )));
                }
                Ok(RawTrack {
                    name_span: Some(name.span()),
                    name: name.into_inner(),
                    key: Some(key),
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}
