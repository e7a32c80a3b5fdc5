//! The address digest of a reported advert (`vigil_common::validate::address_digest`)
//! with `bpf_loop` instead of an unrolled walk.
//!
//! A bounded loop over up to 255 addresses is verified once per iteration on every path
//! that reaches it; `bpf_loop` has its callback verified on its own, whatever the count.
//! The callback reads the addresses from the copy of the message that the checksum left
//! in `msg_buf` (every advert that passed validation was summed), and folds each with the
//! shared `mix_address`, so the digest is the one the agent computes from its own
//! configuration.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use vigil_common::{
    event::FAMILY_V4,
    validate::{Advert, mix_address},
};

use crate::csum::{BUF_LEN, MSG_BUF};

/// What the callback carries from one address to the next.
#[repr(C)]
struct Walk {
    v4: u32,
    sum: u32,
}

/// The digest of `a`'s addresses; valid only after `csum::word_sum` summed `a`'s message
/// in this program run, which validation does for every advert that passes.
#[inline(always)]
pub fn address_digest(a: &Advert) -> Option<u32> {
    let mut walk = Walk {
        v4: u32::from(a.family == FAMILY_V4),
        sum: 0,
    };
    let count = u32::from(a.addr_count);
    // SAFETY: the callback has the signature bpf_loop wants and reads `walk` only while
    // the loop runs; passed as a pointer to the function, as the loader requires.
    let done = unsafe {
        bpf_loop(
            count,
            mix_one as *mut c_void,
            (&mut walk as *mut Walk).cast(),
            0,
        )
    };
    (done == i64::from(count)).then_some(walk.sum)
}

/// One address: index `i` of the list after the 8-byte header. 1 stops the loop (an
/// address past the copy, which validation rules out).
#[inline(never)]
unsafe extern "C" fn mix_one(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` on the caller's stack, alive during the loop.
    let walk = unsafe { &mut *(ctx as *mut Walk) };
    let Some(buf) = MSG_BUF.get_ptr(0) else {
        return 1;
    };
    let buf = buf as *const u8;
    let i = (i & 0xff) as usize;
    let mut addr = [0u8; 16];
    if walk.v4 != 0 {
        let off = 8 + 4 * i;
        if off + 4 > BUF_LEN {
            return 1;
        }
        // SAFETY: `[off, off + 4)` lies inside this CPU's buffer.
        let b = unsafe { core::ptr::read_unaligned(buf.add(off) as *const [u8; 4]) };
        addr[..4].copy_from_slice(&b);
    } else {
        let off = 8 + 16 * i;
        if off + 16 > BUF_LEN {
            return 1;
        }
        // SAFETY: `[off, off + 16)` lies inside this CPU's buffer.
        addr = unsafe { core::ptr::read_unaligned(buf.add(off) as *const [u8; 16]) };
    }
    walk.sum = walk.sum.wrapping_add(mix_address(&addr));
    0
}
