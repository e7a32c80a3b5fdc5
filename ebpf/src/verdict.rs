//! The VRRP frame's parse and RFC 5798 §7.1 judgement, as global functions.
//!
//! The verifier checks a global (exported) function once, on its own, from the types of
//! its arguments, and gives its caller an unknown scalar back. Inlined, the judgement's
//! fifteen verdicts were fifteen constants, and every path after it — counting,
//! reporting, the per-VRID state, the down timer — was verified once per verdict. Here
//! the verdict reaches the rest of the program as one value in a range.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use vigil_common::{
    Verdict, WatchEntry,
    validate::{self, Parsed},
};

use crate::{SCRATCH, Xdp};

/// [`parse`]: not a VRRP frame.
pub const NOT_VRRP: u32 = 0x100;
/// [`parse`]: a VRRP frame, its headers in the scratch advert.
pub const PARSED: u32 = 0x101;

/// Parses the frame into the per-CPU scratch advert: [`NOT_VRRP`], [`PARSED`], or the
/// code of the verdict of a VRRP frame with broken headers.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> u32 {
    vigil_vrrp_parse(ctx.ctx)
}

/// The verdict on the parsed scratch advert, given its watch entry (`None`: not watched).
#[inline(always)]
pub fn check(ctx: &XdpContext, watch: Option<*const WatchEntry>) -> Verdict {
    let code = vigil_vrrp_check(ctx.ctx, watch.unwrap_or(core::ptr::null()));
    Verdict::from_code(code as u8).unwrap_or(Verdict::Length)
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_vrrp_parse(ctx: *mut xdp_md) -> u32 {
    let Some(a) = SCRATCH.get_ptr_mut(0) else {
        return NOT_VRRP;
    };
    // SAFETY: entry 0 of a per-CPU array always exists and only this CPU's program run
    // touches it until it returns.
    let a = unsafe { &mut *a };
    let ctx = XdpContext::new(ctx);
    match validate::parse(&Xdp(&ctx), a) {
        Parsed::NotVrrp => NOT_VRRP,
        Parsed::Vrrp => PARSED,
        Parsed::Broken(v) => v as u32,
    }
}

#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_vrrp_check(ctx: *mut xdp_md, watch: *const WatchEntry) -> u32 {
    let Some(a) = SCRATCH.get_ptr(0) else {
        return Verdict::Length as u32;
    };
    // SAFETY: as in `vigil_vrrp_parse`; `watch` is null or a map value of the watch map,
    // valid for this program run.
    let (a, watch) = unsafe { (&*a, watch.as_ref()) };
    let ctx = XdpContext::new(ctx);
    validate::check(&Xdp(&ctx), a, watch) as u32
}
