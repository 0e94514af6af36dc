//! QEMU's `isa-debug-exit`: the port a test guest writes to end the run.
//!
//! A write of `V` makes QEMU exit with status `2V + 1` (so a guest can never
//! fake QEMU's own status 0). The guest here writes 0 when every self-test
//! passed and 1 otherwise, giving 1 or 3; the VMM reproduces that by ending
//! the guest with [`DebugExit::exit_status`] once it is set.

use crate::{widen, AccessSize, PortDevice, Ticks};

/// The port QEMU's `isa-debug-exit` uses by default, and this guest's.
pub const DEFAULT_PORT: u16 = 0xf4;

/// The debug-exit port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugExit {
    port: u16,
    status: Option<u64>,
}

impl DebugExit {
    /// A debug-exit device answering on `port`.
    pub const fn new(port: u16) -> Self {
        Self { port, status: None }
    }

    /// The exit status the guest asked for: `2V + 1` for the first value `V`
    /// written, or `None` while the guest has not written.
    ///
    /// Only the first write counts: on QEMU the guest stops at it, so a second
    /// write cannot happen, and the VMM may notice the exit late.
    pub const fn exit_status(&self) -> Option<u64> {
        self.status
    }
}

impl PortDevice for DebugExit {
    /// Nothing to read: the port reads as all ones (a choice; QEMU's device
    /// has no read side either).
    fn read(&mut self, _port: u16, size: AccessSize, _now: Ticks) -> u32 {
        widen(0xff, size)
    }

    /// `V` is the value written, of the access's width (u64 so `2V + 1`
    /// cannot overflow even for a dword).
    fn write(&mut self, port: u16, size: AccessSize, value: u32, _now: Ticks) {
        if port == self.port && self.status.is_none() {
            self.status = Some(2 * u64::from(value & size.mask()) + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pass_and_fail_statuses() {
        let mut pass = DebugExit::new(DEFAULT_PORT);
        assert_eq!(pass.exit_status(), None);
        pass.write(0xf4, AccessSize::Byte, 0, 10);
        assert_eq!(pass.exit_status(), Some(1));
        pass.write(0xf4, AccessSize::Byte, 1, 11);
        assert_eq!(pass.exit_status(), Some(1), "the first write wins");

        let mut fail = DebugExit::new(DEFAULT_PORT);
        fail.write(0xf4, AccessSize::Byte, 0x101, 0);
        assert_eq!(
            fail.exit_status(),
            Some(3),
            "a byte write carries the low byte"
        );
        let mut wide = DebugExit::new(DEFAULT_PORT);
        wide.write(0xf4, AccessSize::Dword, u32::MAX, 0);
        assert_eq!(wide.exit_status(), Some(2 * u64::from(u32::MAX) + 1));
        assert_eq!(wide.read(0xf4, AccessSize::Word, 0), 0xffff);
    }

    #[test]
    fn other_ports_do_nothing() {
        let mut exit = DebugExit::new(DEFAULT_PORT);
        exit.write(0xf5, AccessSize::Byte, 0, 0);
        assert_eq!(exit.exit_status(), None);
    }

    proptest! {
        #[test]
        fn random_accesses_never_panic(ops in proptest::collection::vec((any::<bool>(), any::<u16>(), any::<u32>()), 0..50)) {
            let mut exit = DebugExit::new(DEFAULT_PORT);
            for (is_read, port, value) in ops {
                if is_read {
                    prop_assert_eq!(exit.read(port, AccessSize::Byte, 0), 0xff);
                } else {
                    exit.write(port, AccessSize::Byte, value, 0);
                }
            }
        }
    }
}
