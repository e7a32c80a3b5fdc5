//! RFC 1071 sums of frame bytes with the kernel's helpers instead of a loop of loads.
//!
//! A loop of up to a thousand 16-bit loads is cheap to run but dear to verify: the
//! verifier walks every iteration on every path that reaches it, which made the loop
//! most of the agent's start-up. Here the bytes are copied once into a per-CPU buffer
//! (`bpf_xdp_load_bytes`, which checks the range itself) and summed by `bpf_csum_diff`
//! in at most four pieces: a handful of instructions to verify whatever the length.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_md,
    btf_maps::PerCpuArray,
    helpers::{bpf_csum_diff, bpf_xdp_load_bytes},
    macros::btf_map,
};
use vigil_common::{frame::fold, validate::MAX_VRRP_LEN};

/// Room for the longest message, twice over: lengths are masked to 12 bits, which the
/// verifier can bound.
pub const BUF_LEN: usize = 2 * MAX_VRRP_LEN;
/// The most `bpf_csum_diff` sums in one call (the kernel's scratch of 128 words).
const PIECE: usize = 512;
const PIECES: usize = MAX_VRRP_LEN / PIECE;

/// A per-CPU copy of the bytes last summed; u32s keep the pieces word aligned. After
/// [`word_sum`] of a VRRP message it holds that message for the rest of the program run
/// (`digest.rs` reads the addresses there).
#[btf_map(name = "msg_buf")]
pub static MSG_BUF: PerCpuArray<[u32; BUF_LEN / 4], 1> = PerCpuArray::new();

/// The folded one's-complement sum of the big-endian 16-bit words of
/// `[off, off + len)` of the frame, as [`vigil_common::Frame::word_sum`] defines it.
#[inline(always)]
pub fn word_sum(ctx: *mut xdp_md, off: usize, len: usize) -> Option<u16> {
    if len == 0 || len > MAX_VRRP_LEN || len & 1 == 1 {
        return None;
    }
    let buf = MSG_BUF.get_ptr_mut(0)? as *mut u8;
    let n = len & (BUF_LEN - 1);
    if n == 0 {
        return None;
    }
    // The sum runs over whole 32-bit words; a length of 2 mod 4 ends in half a word,
    // whose other half must be zero (a zero adds nothing to the sum).
    let words = (n + 3) & (BUF_LEN - 4);
    // SAFETY: `words - 4 + 4 <= BUF_LEN`, inside this CPU's buffer, which only this
    // program run touches.
    unsafe { (buf.add((n & (BUF_LEN - 4)) & (BUF_LEN - 4)) as *mut u32).write(0) };
    // SAFETY: the helper checks `[off, off + n)` against the frame and copies at most `n
    // <= BUF_LEN` bytes into the buffer.
    if unsafe { bpf_xdp_load_bytes(ctx, off as u32, buf as *mut c_void, n as u32) } != 0 {
        return None;
    }
    let mut seed: u32 = 0;
    let mut i = 0;
    while i < PIECES {
        let done = i * PIECE;
        if done >= words {
            break;
        }
        let size = if words - done > PIECE {
            PIECE
        } else {
            words - done
        };
        // SAFETY: `[done, done + size)` lies inside the buffer, `size` is a multiple of 4
        // of at most PIECE, and no `from` words are given.
        let r = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                buf.add(done) as *mut u32,
                (size & (2 * PIECE - 4)) as u32,
                seed,
            )
        };
        if r < 0 {
            return None;
        }
        seed = r as u32;
        i += 1;
    }
    // The helper adds words as the CPU loads them; on a little-endian machine that is the
    // byte-swapped sum, and a folded one's-complement sum swaps with its words.
    Some(u16::from_be(fold(seed)))
}
