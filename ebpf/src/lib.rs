#![no_std]
//! Library half of vigil-ebpf; the program itself is the `vigil` binary (src/main.rs).
