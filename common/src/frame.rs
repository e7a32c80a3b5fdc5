//! Bounds-checked access to a received frame, implemented once for the XDP context and
//! once for a byte slice, so that the validation in [`crate::validate`] is one piece of
//! code with two homes: the XDP program and the raw-socket fallback.

use crate::validate::MAX_VRRP_LEN;

/// A received Ethernet frame.
pub trait Frame {
    /// Copies `N` bytes starting at `off`, or `None` when they are not all inside the frame.
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]>;

    /// One byte at `off`.
    #[inline(always)]
    fn u8_at(&self, off: usize) -> Option<u8> {
        self.load::<1>(off).map(|b| b[0])
    }

    /// A big-endian 16-bit word at `off`.
    #[inline(always)]
    fn u16_at(&self, off: usize) -> Option<u16> {
        self.load::<2>(off).map(u16::from_be_bytes)
    }

    /// The one's-complement sum (RFC 1071) of the big-endian 16-bit words of
    /// `[off, off + len)`, folded to 16 bits; `None` when the range leaves the frame, `len`
    /// is odd, or it exceeds [`MAX_VRRP_LEN`]. The XDP program overrides this with the
    /// kernel's checksum helper: a loop of up to a thousand loads costs the verifier one
    /// pass per iteration on every path that reaches it.
    #[inline(always)]
    fn word_sum(&self, off: usize, len: usize) -> Option<u16> {
        if len > MAX_VRRP_LEN || len & 1 == 1 {
            return None;
        }
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < MAX_VRRP_LEN / 2 {
            if 2 * i >= len {
                break;
            }
            sum += self.u16_at(off + 2 * i)? as u32;
            i += 1;
        }
        Some(fold(sum))
    }
}

/// Folds a 32-bit sum of 16-bit words to 16 bits with end-around carries (RFC 1071); two
/// folds suffice for any 32-bit value.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

impl Frame for [u8] {
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let bytes = self.get(off..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}
