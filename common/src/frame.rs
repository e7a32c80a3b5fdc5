//! Bounds-checked access to a received frame, implemented once for the XDP context and
//! once for a byte slice, so that the validation in [`crate::validate`] is one piece of
//! code with two homes: the XDP program and the raw-socket fallback.

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
