//! A stable content hash (64-bit FNV-1a) for deciding whether to rebuild.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl Fingerprint {
    pub fn new() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }

    /// Adds a named part; the name and a length prefix keep parts apart.
    pub fn add(&mut self, name: &str, bytes: &[u8]) {
        for chunk in [name.as_bytes(), &(bytes.len() as u64).to_le_bytes(), bytes] {
            for &b in chunk {
                self.0 ^= u64::from(b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs_when_any_part_changes_or_moves() {
        let mut a = Fingerprint::new();
        a.add("x", b"ab");
        a.add("y", b"c");
        let mut b = Fingerprint::new();
        b.add("x", b"a");
        b.add("y", b"bc");
        assert_ne!(a, b);
        let mut c = Fingerprint::new();
        c.add("x", b"ab");
        c.add("y", b"c");
        assert_eq!(a, c);
        assert_eq!(Fingerprint::new().hex(), "cbf29ce484222325");
    }
}
