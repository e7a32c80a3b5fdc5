//! Kernel-facing actions: addresses, announcements, links.
