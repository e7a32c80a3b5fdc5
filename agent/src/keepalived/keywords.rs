//! Every keyword keepalived's VRRP half (and the blocks around it) reads, where it may
//! appear, and what the importer does with it: carried over, or warned about with what
//! will behave differently. The importer's warnings for keywords it does not carry come
//! from here, and so does the table in docs/migrating-from-keepalived.md (a test keeps
//! the two equal), so the list, the behaviour and the documentation cannot drift apart.

/// Where a keyword appears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Block {
    /// Top level of the file.
    Top,
    /// `global_defs { }`.
    GlobalDefs,
    /// `vrrp_instance NAME { }` (with its `authentication { }` sub-block).
    Instance,
    /// `vrrp_sync_group NAME { }`.
    SyncGroup,
    /// `vrrp_script NAME { }`.
    Script,
    /// `vrrp_track_process NAME { }`.
    TrackProcess,
    /// `track_file NAME { }` (and its old name `vrrp_track_file`).
    TrackFile,
}

impl Block {
    /// How the block is written in keepalived.conf.
    pub fn title(self) -> &'static str {
        match self {
            Block::Top => "top level",
            Block::GlobalDefs => "global_defs",
            Block::Instance => "vrrp_instance",
            Block::SyncGroup => "vrrp_sync_group",
            Block::Script => "vrrp_script",
            Block::TrackProcess => "vrrp_track_process",
            Block::TrackFile => "track_file",
        }
    }
}

/// What the importer does with a keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Carried over to the vigil key(s) named.
    Carried(&'static str),
    /// Not carried over; the text says why and what behaves differently.
    Dropped(&'static str),
}

/// One keyword.
#[derive(Clone, Copy, Debug)]
pub struct Keyword {
    /// Where it appears.
    pub block: Block,
    /// The keyword.
    pub name: &'static str,
    /// What happens to it.
    pub fate: Fate,
}

const fn c(block: Block, name: &'static str, to: &'static str) -> Keyword {
    Keyword {
        block,
        name,
        fate: Fate::Carried(to),
    }
}

const fn d(block: Block, name: &'static str, why: &'static str) -> Keyword {
    Keyword {
        block,
        name,
        fate: Fate::Dropped(why),
    }
}

use Block::{GlobalDefs as G, Instance as I, Script as S, SyncGroup as Y, Top as T};
use Block::{TrackFile as F, TrackProcess as P};

const LVS: &str =
    "LVS load balancing and its health checkers are not part of vigil (it does VRRP only)";
const DAEMON: &str = "a keepalived daemon tunable with no vigil counterpart; vigil runs as one process with its own defaults";
const EMAIL: &str =
    "e-mail alerts are not supported; use notify scripts (notify_master, notify, ...) to send mail";
const SNMP: &str = "SNMP and D-Bus are not supported; use `vigil status --json` or the Prometheus endpoint (global.metrics)";
const FIFO: &str = "notify FIFOs are not supported; use a `notify` script, which gets the same INSTANCE/GROUP name state priority words";
const FIREWALL: &str = "vigil enforces accept = false (no_accept, strict mode's default) with its own nftables table, inet vigil; how keepalived names, orders or counts its rules does not carry over";
const BFD: &str = "a tunable of keepalived's BFD process; vigil's BFD runs inside the agent";
const NETNS: &str = "network namespaces are chosen by how vigil is started (e.g. `ip netns exec`), not by the configuration";
const VMAC: &str = "vigil names the virtual MAC interface itself (vrrp.VRID, or vmac_interface) and always uses the RFC 5798 MAC 00:00:5e:00:01:VRID";
const STATIC: &str = "static addresses, routes and rules are not managed by vigil; configure them with the system's network configuration";
const GARP_TUNE: &str = "vigil announces on becoming Master (plus garp_master_refresh) and on a lower-priority advert (garp_lower_prio_*); there is no separate pacing";
const ADVERT_TUNE: &str = "vigil follows RFC 5798 here: a Master answers a lower-priority advert at once, a Backup never advertises, the owner listens to no one";
const CHECK_SRC: &str = "vigil accepts adverts from any source that passes the RFC checks (TTL 255, VRID, version, checksum); unicast peers are not matched against the source";
const IGNORED_DEBUG: &str = "debug levels are set with RUST_LOG / --log-level on vigil";
const OWN_IFACE: &str = "vigil always tracks the instance's own interface: a link down is FAULT";
const NOTIFY_EXTRA: &str =
    "this notify event does not exist in vigil: only MASTER, BACKUP, FAULT and STOP are notified";
const HMAC: &str =
    "HMAC authentication (a keepalived extension) is not supported: VRRPv2 simple password only";

/// Every keyword, by block, in keepalived's own order within each block.
pub const KEYWORDS: &[Keyword] = &[
    // ---- top level
    c(T, "global_defs", "[global]"),
    c(T, "vrrp_instance", "[instances.NAME]"),
    c(T, "vrrp_script", "[scripts.NAME]"),
    c(T, "vrrp_sync_group", "[sync_groups.NAME]"),
    c(T, "vrrp_track_process", "[processes.NAME]"),
    c(T, "track_file", "track_files entries (resolved by name)"),
    c(
        T,
        "vrrp_track_file",
        "track_files entries (resolved by name)",
    ),
    c(T, "include", "followed (globs allowed)"),
    d(T, "static_ipaddress", STATIC),
    d(T, "static_routes", STATIC),
    d(T, "static_rules", STATIC),
    d(
        T,
        "track_group",
        "track groups (which instances an address's tracking affects) are not supported; every address belongs to its instance alone",
    ),
    d(
        T,
        "garp_group",
        "garp_group is not supported; use garp_master_* on instances",
    ),
    d(
        T,
        "linkbeat_interfaces",
        "vigil watches links by netlink events only",
    ),
    d(
        T,
        "interface_up_down_delays",
        "link changes act at once in vigil; there is no per-interface delay",
    ),
    d(T, "net_namespace", NETNS),
    d(T, "net_namespace_ipvs", NETNS),
    d(T, "namespace_with_ipsets", NETNS),
    d(T, "use_pid_dir", DAEMON),
    d(T, "instance", DAEMON),
    d(T, "child_wait_time", DAEMON),
    d(
        T,
        "linkbeat_use_polling",
        "vigil watches links by netlink events only",
    ),
    c(T, "bfd_instance", "[bfd.NAME]"),
    d(T, "virtual_server", LVS),
    d(T, "virtual_server_group", LVS),
    d(T, "SSL", LVS),
    // ---- global_defs
    c(G, "router_id", "global.router_id"),
    c(G, "script_user", "global.script_user"),
    c(
        G,
        "vrrp_version",
        "version of each instance that does not set it",
    ),
    c(
        G,
        "vrrp_down_timer_adverts",
        "down_timer_adverts of each instance that does not set it",
    ),
    c(G, "vrrp_garp_master_delay", "global.garp_master_delay"),
    c(G, "vrrp_garp_master_repeat", "global.garp_master_repeat"),
    c(
        G,
        "vrrp_rt_priority",
        "global.realtime_priority (keepalived: the VRRP process at SCHED_RR; vigil: the election loop and BFD thread at SCHED_FIFO)",
    ),
    c(G, "vrrp_garp_master_refresh", "global.garp_master_refresh"),
    c(
        G,
        "vrrp_garp_master_refresh_repeat",
        "global.garp_master_refresh_repeat",
    ),
    c(
        G,
        "vrrp_garp_lower_prio_delay",
        "global.garp_lower_prio_delay",
    ),
    c(
        G,
        "vrrp_garp_lower_prio_repeat",
        "global.garp_lower_prio_repeat",
    ),
    c(
        G,
        "vrrp_min_garp",
        "global.garp_master_repeat = 1, garp_master_delay = 0",
    ),
    c(
        G,
        "vrrp_strict",
        "its effects on each instance: accept = false below priority 255, no auth_pass, garp_lower_prio_repeat = 0, initial_state by ownership, preempt_delay and down_timer_adverts cleared (its extra checks of received adverts are warned)",
    ),
    d(
        G,
        "enable_script_security",
        "vigil runs scripts as script_user but does not check the permissions of script files",
    ),
    d(G, "notification_email", EMAIL),
    d(G, "notification_email_from", EMAIL),
    d(G, "smtp_server", EMAIL),
    d(G, "smtp_helo_name", EMAIL),
    d(G, "smtp_connect_timeout", EMAIL),
    d(G, "smtp_alert", EMAIL),
    d(G, "smtp_alert_vrrp", EMAIL),
    d(G, "smtp_alert_checker", EMAIL),
    d(G, "no_email_faults", EMAIL),
    d(G, "no_checker_emails", EMAIL),
    d(G, "enable_snmp_vrrp", SNMP),
    d(G, "enable_snmp_keepalived", SNMP),
    d(G, "enable_snmp_checker", SNMP),
    d(G, "enable_snmp_rfc", SNMP),
    d(G, "enable_snmp_rfcv2", SNMP),
    d(G, "enable_snmp_rfcv3", SNMP),
    d(G, "enable_traps", SNMP),
    d(G, "snmp_socket", SNMP),
    d(G, "enable_dbus", SNMP),
    d(G, "dbus_service_name", SNMP),
    d(G, "dbus_no_interface_name", SNMP),
    d(G, "notify_fifo", FIFO),
    d(G, "notify_fifo_script", FIFO),
    d(G, "vrrp_notify_fifo", FIFO),
    d(G, "vrrp_notify_fifo_script", FIFO),
    d(G, "fifo_write_vrrp_states_on_reload", FIFO),
    d(G, "vrrp_iptables", FIREWALL),
    d(G, "vrrp_ipsets", FIREWALL),
    d(G, "nftables", FIREWALL),
    d(G, "nftables_priority", FIREWALL),
    d(G, "nftables_ifindex", FIREWALL),
    d(G, "nftables_counters", FIREWALL),
    d(
        G,
        "vrrp_mcast_group4",
        "vigil sends to the RFC groups 224.0.0.18 / ff02::12 only; use unicast_peers for anything else",
    ),
    d(
        G,
        "vrrp_mcast_group6",
        "vigil sends to the RFC groups 224.0.0.18 / ff02::12 only; use unicast_peers for anything else",
    ),
    d(G, "vrrp_check_unicast_src", CHECK_SRC),
    d(
        G,
        "vrrp_skip_check_adv_addr",
        "vigil compares the advertised address list only to log a mismatch (RFC 5798 §7.1), as this option asks",
    ),
    d(G, "vrrp_garp_interval", GARP_TUNE),
    d(G, "vrrp_gna_interval", GARP_TUNE),
    d(G, "vrrp_garp_extra_if", GARP_TUNE),
    d(G, "vrrp_vmac_garp_intvl", GARP_TUNE),
    d(G, "vrrp_lower_prio_no_advert", ADVERT_TUNE),
    d(G, "vrrp_higher_prio_send_advert", ADVERT_TUNE),
    d(G, "vrrp_owner_ignore_adverts", ADVERT_TUNE),
    d(G, "vrrp_notify_priority_changes", NOTIFY_EXTRA),
    d(
        G,
        "vrrp_startup_delay",
        "vigil starts its elections at once (a Backup waits one Master_Down_Interval anyway)",
    ),
    d(
        G,
        "vrrp_delay_after_boot",
        "vigil starts its elections at once (a Backup waits one Master_Down_Interval anyway)",
    ),
    d(
        G,
        "v3_checksum_as_v2",
        "not carried as a default: set v3_checksum_as_v2 = true on each VRRPv3 IPv4 instance that talks to such peers",
    ),
    d(G, "vmac_prefix", VMAC),
    d(G, "vmac_addr_prefix", VMAC),
    d(G, "vrrp_priority", DAEMON),
    d(G, "vrrp_no_swap", DAEMON),
    d(G, "vrrp_cpu_affinity", DAEMON),
    d(G, "vrrp_rlimit_rtime", DAEMON),
    d(G, "vrrp_rlimit_rttime", DAEMON),
    d(G, "vrrp_process_name", DAEMON),
    d(G, "vrrp_netlink_cmd_rcv_bufs", DAEMON),
    d(G, "vrrp_netlink_cmd_rcv_bufs_force", DAEMON),
    d(G, "vrrp_netlink_monitor_rcv_bufs", DAEMON),
    d(G, "vrrp_netlink_monitor_rcv_bufs_force", DAEMON),
    d(G, "vrrp_rx_bufs_policy", DAEMON),
    d(G, "vrrp_rx_bufs_multiplier", DAEMON),
    d(G, "process_monitor_rcv_bufs", DAEMON),
    d(G, "process_monitor_rcv_bufs_force", DAEMON),
    d(G, "process_names", DAEMON),
    d(G, "process_name", DAEMON),
    d(G, "max_auto_priority", DAEMON),
    d(G, "min_auto_priority_delay", DAEMON),
    d(G, "umask", DAEMON),
    d(G, "use_symlink_paths", DAEMON),
    d(
        G,
        "set_supplementary_groups",
        "scripts run with the user's primary group only",
    ),
    d(G, "child_wait_time", DAEMON),
    d(G, "config_save_dir", DAEMON),
    d(G, "tmp_config_directory", DAEMON),
    d(
        G,
        "reload_check_config",
        "vigil always checks a reloaded file first and keeps the running configuration when it is bad",
    ),
    d(G, "reload_time_file", DAEMON),
    d(G, "reload_repeat", DAEMON),
    d(G, "reload_file", DAEMON),
    d(G, "include_check", DAEMON),
    d(G, "random_seed", DAEMON),
    d(G, "data_use_instance", DAEMON),
    d(G, "instance", DAEMON),
    d(G, "use_pid_dir", DAEMON),
    d(G, "net_namespace", NETNS),
    d(G, "net_namespace_ipvs", NETNS),
    d(G, "namespace_with_ipsets", NETNS),
    d(
        G,
        "iproute_usr_dir",
        "vigil does not read iproute2's name tables",
    ),
    d(
        G,
        "iproute_etc_dir",
        "vigil does not read iproute2's name tables",
    ),
    d(
        G,
        "json_version",
        "state dumps are not supported; use `vigil status --json`",
    ),
    d(
        G,
        "json_dump_file",
        "state dumps are not supported; use `vigil status --json`",
    ),
    d(
        G,
        "state_dump_file",
        "state dumps are not supported; use `vigil status --json`",
    ),
    d(
        G,
        "stats_dump_file",
        "state dumps are not supported; use `vigil status --json`",
    ),
    d(
        G,
        "dynamic_interfaces",
        "vigil needs an instance's interface to exist when the instance starts",
    ),
    d(
        G,
        "default_interface",
        "every vigil instance names its interface",
    ),
    d(
        G,
        "log_unknown_vrids",
        "`vigil trace -i IFACE --all` shows adverts of every VRID",
    ),
    d(G, "disable_local_igmp", DAEMON),
    d(
        G,
        "startup_script",
        "run start-up and shutdown commands from the service manager (ExecStartPre / ExecStopPost)",
    ),
    d(
        G,
        "startup_script_timeout",
        "run start-up and shutdown commands from the service manager (ExecStartPre / ExecStopPost)",
    ),
    d(
        G,
        "shutdown_script",
        "run start-up and shutdown commands from the service manager (ExecStartPre / ExecStopPost)",
    ),
    d(
        G,
        "shutdown_script_timeout",
        "run start-up and shutdown commands from the service manager (ExecStartPre / ExecStopPost)",
    ),
    d(
        G,
        "linkbeat_use_polling",
        "vigil watches links by netlink events only",
    ),
    d(G, "lvs_sync_daemon", LVS),
    d(G, "lvs_timeouts", LVS),
    d(G, "lvs_flush", LVS),
    d(G, "lvs_flush_on_stop", LVS),
    d(G, "lvs_flush_onstop", LVS),
    d(G, "lvs_notify_fifo", LVS),
    d(G, "lvs_notify_fifo_script", LVS),
    d(G, "lvs_netlink_cmd_rcv_bufs", LVS),
    d(G, "lvs_netlink_cmd_rcv_bufs_force", LVS),
    d(G, "lvs_netlink_monitor_rcv_bufs", LVS),
    d(G, "lvs_netlink_monitor_rcv_bufs_force", LVS),
    d(G, "lvs_process_name", LVS),
    d(G, "rs_init_notifies", LVS),
    d(G, "nftables_ipvs", LVS),
    d(G, "nftables_ipvs_priority", LVS),
    d(G, "nftables_ipvs_start_fwmark", LVS),
    d(G, "snmp_rs_stats_update_interval", LVS),
    d(G, "snmp_vs_stats_update_interval", LVS),
    d(G, "checker_priority", LVS),
    d(G, "checker_no_swap", LVS),
    d(G, "checker_rt_priority", LVS),
    d(G, "checker_cpu_affinity", LVS),
    d(G, "checker_rlimit_rtime", LVS),
    d(G, "checker_rlimit_rttime", LVS),
    d(G, "checker_process_name", LVS),
    d(G, "checker_log_all_failures", LVS),
    d(G, "bfd_priority", BFD),
    d(G, "bfd_no_swap", BFD),
    d(G, "bfd_rt_priority", BFD),
    d(G, "bfd_cpu_affinity", BFD),
    d(G, "bfd_rlimit_rtime", BFD),
    d(G, "bfd_rlimit_rttime", BFD),
    d(G, "bfd_process_name", BFD),
    // ---- vrrp_instance
    c(
        I,
        "state",
        "initial_state (MASTER / BACKUP in upper case only, as keepalived matches them)",
    ),
    c(I, "interface", "interface"),
    c(I, "virtual_router_id", "vrid"),
    c(
        I,
        "priority",
        "priority (when missing: 255 with state MASTER, else 100, as keepalived derives it)",
    ),
    c(I, "advert_int", "advert_interval"),
    c(I, "version", "version"),
    c(I, "authentication", "auth_pass (with auth_type PASS)"),
    c(I, "auth_type", "auth_pass (PASS only)"),
    c(I, "auth_pass", "auth_pass (at most 8 bytes)"),
    c(
        I,
        "virtual_ipaddress",
        "virtual_addresses (an address of the other family goes to excluded_addresses)",
    ),
    c(I, "virtual_ipaddress_excluded", "excluded_addresses"),
    c(
        I,
        "nopreempt",
        "preempt = false (cleared, as keepalived clears it, with state MASTER or priority 255)",
    ),
    c(I, "preempt", "preempt = true"),
    c(
        I,
        "preempt_delay",
        "preempt_delay (cleared, as keepalived clears it, with state MASTER, nopreempt or strict mode)",
    ),
    c(I, "down_timer_adverts", "down_timer_adverts"),
    c(I, "unicast_src_ip", "unicast_src_ip (a /prefix dropped)"),
    c(I, "mcast_src_ip", "unicast_src_ip"),
    c(
        I,
        "unicast_peer",
        "unicast_peers (a /prefix dropped, repeats left out)",
    ),
    c(I, "accept", "accept = true"),
    c(
        I,
        "no_accept",
        "accept = false (enforced with an nftables table, inet vigil, as keepalived does)",
    ),
    c(I, "old_unicast_checksum", "v3_checksum_as_v2 = true"),
    c(I, "v3_checksum_as_v2", "v3_checksum_as_v2 = true"),
    c(I, "track_script", "track_scripts"),
    c(I, "track_interface", "track_interfaces"),
    c(I, "track_file", "track_files"),
    c(I, "track_process", "track_processes"),
    c(I, "notify_master", "notify_master"),
    c(I, "notify_backup", "notify_backup"),
    c(I, "notify_fault", "notify_fault"),
    c(I, "notify_stop", "notify_stop"),
    c(I, "notify", "notify"),
    c(I, "garp_master_delay", "garp_master_delay"),
    c(I, "garp_master_repeat", "garp_master_repeat"),
    c(I, "garp_master_refresh", "garp_master_refresh"),
    c(
        I,
        "garp_master_refresh_repeat",
        "garp_master_refresh_repeat",
    ),
    c(I, "garp_lower_prio_delay", "garp_lower_prio_delay"),
    c(I, "garp_lower_prio_repeat", "garp_lower_prio_repeat"),
    c(
        I,
        "use_vmac",
        "use_vmac = true (and vmac_interface = NAME); adverts leave from the virtual MAC, IPv6 ones from the parent's link-local address; to unicast peers from the parent and its MAC (keepalived forces vmac_xmit_base there)",
    ),
    c(I, "vmac_xmit_base", "vmac_xmit_base = true"),
    d(
        I,
        "use_vmac_addr",
        "vigil sets the virtual router MAC on the macvlan it makes; it does not take over an existing interface's address",
    ),
    d(
        I,
        "use_ipvlan",
        "ipvlan interfaces are not supported: use use_vmac (a macvlan with the virtual router MAC)",
    ),
    c(
        I,
        "virtual_routes",
        "virtual_routes (options vigil lacks, such as onlink or no_track, are warned)",
    ),
    c(
        I,
        "virtual_rules",
        "virtual_rules (named tables and other options are warned)",
    ),
    d(
        I,
        "native_ipv6",
        "not needed: the family comes from the virtual addresses (IPv6 means VRRPv3)",
    ),
    d(I, "dont_track_primary", OWN_IFACE),
    d(
        I,
        "linkbeat_use_polling",
        "vigil watches links by netlink events only",
    ),
    d(
        I,
        "vrf",
        "VRFs are not supported: the instance's interface is used as it is",
    ),
    d(
        I,
        "mcast_dst_ip",
        "vigil sends to the RFC groups 224.0.0.18 / ff02::12 only; use unicast_peers for anything else",
    ),
    d(
        I,
        "unicast_ttl",
        "vigil sends with TTL 255 and accepts only TTL 255 (RFC 5798 §5.1.1.3)",
    ),
    d(
        I,
        "unicast_fault_no_peer",
        "an instance with no unicast peers sends multicast in vigil; it is not put in FAULT",
    ),
    d(I, "check_unicast_src", CHECK_SRC),
    d(
        I,
        "track_src_ip",
        "vigil does not track its source address; if it goes, the interface's next address is used at restart",
    ),
    d(
        I,
        "no_virtual_ipaddress",
        "vigil needs at least one virtual address per instance",
    ),
    d(
        I,
        "promote_secondaries",
        "vigil does not set promote_secondaries on the interface; set it with sysctl if removing a VIP must keep secondaries",
    ),
    d(
        I,
        "skip_check_adv_addr",
        "vigil compares the advertised address list only to log a mismatch (RFC 5798 §7.1), as this option asks",
    ),
    c(
        I,
        "strict_mode",
        "as global_defs vrrp_strict, for this instance",
    ),
    d(I, "debug", IGNORED_DEBUG),
    d(I, "notify_deleted", NOTIFY_EXTRA),
    d(I, "notify_master_rx_lower_pri", NOTIFY_EXTRA),
    d(I, "notify_priority_changes", NOTIFY_EXTRA),
    d(I, "smtp_alert", EMAIL),
    d(I, "lvs_sync_daemon_interface", LVS),
    d(I, "garp_extra_if", GARP_TUNE),
    d(I, "vmac_garp_intvl", GARP_TUNE),
    d(
        I,
        "timer_expired_backup",
        "a Master_Down_Timer expiry in vigil always means taking over, as the RFC says",
    ),
    d(
        I,
        "thread_timer_expired",
        "a Master_Down_Timer expiry in vigil always means taking over, as the RFC says",
    ),
    d(I, "lower_prio_no_advert", ADVERT_TUNE),
    d(I, "higher_prio_send_advert", ADVERT_TUNE),
    d(I, "owner_ignore_adverts", ADVERT_TUNE),
    d(I, "kernel_rx_buf_size", DAEMON),
    c(I, "track_bfd", "track_bfd"),
    d(I, "auth_hmac", HMAC),
    d(I, "key", HMAC),
    d(I, "active_key", HMAC),
    d(I, "time_window", HMAC),
    d(I, "anti_replay", HMAC),
    d(I, "mode", HMAC),
    // ---- vrrp_sync_group
    c(Y, "group", "sync_groups.NAME.instances"),
    c(
        Y,
        "track_script",
        "sync_groups.NAME.track_scripts (FAULT only)",
    ),
    c(
        Y,
        "track_interface",
        "sync_groups.NAME.track_interfaces (FAULT only)",
    ),
    c(Y, "track_file", "sync_groups.NAME.track_files (FAULT only)"),
    c(
        Y,
        "track_process",
        "sync_groups.NAME.track_processes (FAULT only)",
    ),
    c(Y, "notify_master", "sync_groups.NAME.notify_master"),
    c(Y, "notify_backup", "sync_groups.NAME.notify_backup"),
    c(Y, "notify_fault", "sync_groups.NAME.notify_fault"),
    c(Y, "notify_stop", "sync_groups.NAME.notify_stop"),
    c(Y, "notify", "sync_groups.NAME.notify"),
    d(
        Y,
        "track_bfd",
        "not carried over in a sync group: track the session in each member instance",
    ),
    d(Y, "smtp_alert", EMAIL),
    d(
        Y,
        "global_tracking",
        "not supported: in a vigil sync group every tracked failure, the members' own included, means FAULT for the whole group; weights are ignored (keepalived's default)",
    ),
    d(
        Y,
        "sync_group_tracking_weight",
        "not supported: in a vigil sync group every tracked failure, the members' own included, means FAULT for the whole group; weights are ignored (keepalived's default)",
    ),
    d(Y, "notify_priority_changes", NOTIFY_EXTRA),
    // ---- vrrp_script
    c(S, "script", "command"),
    c(
        S,
        "interval",
        "interval (whole seconds, as keepalived reads it)",
    ),
    c(
        S,
        "timeout",
        "timeout (whole seconds, as keepalived reads it)",
    ),
    c(S, "weight", "weight"),
    c(S, "rise", "rise"),
    c(S, "fall", "fall"),
    c(S, "user", "user"),
    d(
        S,
        "init_fail",
        "vigil scripts start neither failed nor OK: the first result decides, then rise/fall count",
    ),
    // ---- vrrp_track_process
    c(
        P,
        "process",
        "name (and command_line when arguments are given)",
    ),
    c(P, "param_match", "command_match (exact, initial, partial)"),
    c(P, "weight", "weight"),
    c(P, "quorum", "quorum"),
    c(P, "quorum_max", "quorum_max"),
    c(P, "delay", "fork_delay and terminate_delay"),
    c(P, "terminate_delay", "terminate_delay"),
    c(P, "fork_delay", "fork_delay"),
    c(
        P,
        "full_command",
        "name holds the program's path (matched against argv[0])",
    ),
    // ---- track_file
    c(F, "file", "track_files path"),
    c(F, "weight", "track_files weight"),
    d(
        F,
        "init_file",
        "vigil does not create or initialise tracked files: a missing file reads as 0",
    ),
];

/// The keyword's entry in `block`, if keepalived has it there.
pub fn lookup(block: Block, name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.block == block && k.name == name)
}

/// Why a keyword is not carried over, for the warning.
pub fn dropped(block: Block, name: &str) -> Option<&'static str> {
    match lookup(block, name)?.fate {
        Fate::Dropped(why) => Some(why),
        Fate::Carried(_) => None,
    }
}

/// The Markdown table of every keyword, for docs/migrating-from-keepalived.md.
pub fn markdown() -> String {
    let mut out = String::new();
    let mut last = None;
    for k in KEYWORDS {
        if last != Some(k.block) {
            if last.is_some() {
                out.push('\n');
            }
            out.push_str(&format!(
                "### {}\n\n| keyword | vigil | what differs |\n| --- | --- | --- |\n",
                k.block.title()
            ));
            last = Some(k.block);
        }
        let (to, why) = match k.fate {
            Fate::Carried(to) => (format!("supported: {to}"), "—"),
            Fate::Dropped(why) => ("not supported (warned)".to_string(), why),
        };
        out.push_str(&format!("| `{}` | {} | {} |\n", k.name, to, why));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keyword_is_listed_twice_in_one_block() {
        for (n, k) in KEYWORDS.iter().enumerate() {
            assert!(
                !KEYWORDS[..n]
                    .iter()
                    .any(|o| o.block == k.block && o.name == k.name),
                "{} listed twice in {}",
                k.name,
                k.block.title()
            );
        }
    }
}
