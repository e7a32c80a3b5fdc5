//! VRRP protocol core: packet codec and the sans-IO election.
