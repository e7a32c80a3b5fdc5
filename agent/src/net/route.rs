//! Routes and policy rules that move with an instance (`virtual_routes`,
//! `virtual_rules`), added and removed over rtnetlink.

use std::io;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::route::{RouteMessage, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::RouteMessageBuilder;

use super::{Netlink, netlink_io};
use crate::config::route::{RouteKind, VirtualRoute, VirtualRule};

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// The kernel message for `r`; `oif` is the output interface index, if any.
pub fn route_message(r: &VirtualRoute, oif: Option<u32>) -> io::Result<RouteMessage> {
    let mut b = RouteMessageBuilder::<std::net::IpAddr>::new()
        .destination_prefix(r.to.addr, r.to.len)
        .map_err(bad)?;
    if let Some(via) = r.via {
        b = b.gateway(via).map_err(bad)?;
    }
    if let Some(src) = r.src {
        b = b.pref_source(src).map_err(bad)?;
    }
    if let Some(i) = oif {
        b = b.output_interface(i);
    }
    if let Some(t) = r.table {
        b = b.table_id(t);
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    b = b.kind(match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Prohibit => RouteType::Prohibit,
    });
    Ok(b.build())
}

/// The kernel message for `r`.
pub fn rule_message(r: &VirtualRule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if r.ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = RuleAction::ToTable;
    if r.table < 256 {
        m.header.table = r.table as u8;
    }
    m.attributes.push(RuleAttribute::Table(r.table));
    if let Some(p) = r.from {
        m.header.src_len = p.len;
        m.attributes.push(RuleAttribute::Source(p.addr));
    }
    if let Some(p) = r.to {
        m.header.dst_len = p.len;
        m.attributes.push(RuleAttribute::Destination(p.addr));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(i) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(i.clone()));
    }
    if let Some(f) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(f));
    }
    if let Some(p) = r.priority {
        m.attributes.push(RuleAttribute::Priority(p));
    }
    m
}

impl Netlink {
    /// Adds a route; `Ok(false)` if it was already there.
    pub async fn add_route(&self, msg: RouteMessage) -> io::Result<bool> {
        match self
            .handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(netlink_io)
        {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes a route; `Ok(false)` if it was not there.
    pub async fn remove_route(&self, msg: RouteMessage) -> io::Result<bool> {
        match self
            .handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(netlink_io)
        {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds a policy rule; `Ok(false)` if it was already there.
    pub async fn add_rule(&self, msg: RuleMessage) -> io::Result<bool> {
        let mut req = self.handle.rule().add();
        *req.message_mut() = msg;
        match req.execute().await.map_err(netlink_io) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes a policy rule; `Ok(false)` if it was not there.
    pub async fn remove_rule(&self, msg: RuleMessage) -> io::Result<bool> {
        match self
            .handle
            .rule()
            .del(msg)
            .execute()
            .await
            .map_err(netlink_io)
        {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
