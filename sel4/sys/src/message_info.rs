//! The message-info word that accompanies every IPC (`seL4_MessageInfo`).

use crate::bitfield::{
    seL4_MessageInfo_capsUnwrapped as CAPS_UNWRAPPED, seL4_MessageInfo_extraCaps as EXTRA_CAPS,
    seL4_MessageInfo_label as LABEL, seL4_MessageInfo_length as LENGTH,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct MessageInfo(pub u64);

impl MessageInfo {
    pub const fn new(label: u64, caps_unwrapped: u64, extra_caps: u64, length: u64) -> Self {
        let w = LABEL.set(0, label);
        let w = CAPS_UNWRAPPED.set(w, caps_unwrapped);
        let w = EXTRA_CAPS.set(w, extra_caps);
        MessageInfo(LENGTH.set(w, length))
    }

    pub const fn label(self) -> u64 {
        LABEL.get(self.0)
    }

    pub const fn caps_unwrapped(self) -> u64 {
        CAPS_UNWRAPPED.get(self.0)
    }

    pub const fn extra_caps(self) -> u64 {
        EXTRA_CAPS.get(self.0)
    }

    pub const fn length(self) -> u64 {
        LENGTH.get(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_do_not_overlap() {
        let m = MessageInfo::new(0xabc, 5, 2, 100);
        assert_eq!(
            (m.label(), m.caps_unwrapped(), m.extra_caps(), m.length()),
            (0xabc, 5, 2, 100)
        );
        // seL4 5.0.0 (64-bit): label 20 bits above caps 3, extra 2, length 7.
        assert_eq!(MessageInfo::new(1, 0, 0, 0).0, 1 << 12);
        assert_eq!(MessageInfo::new(0, 0, 0, 1).0, 1);
    }
}
