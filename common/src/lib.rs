//! Types shared by vigil's XDP program and its agent.
#![no_std]
