//! The bundle the loader carries: the serialized spec and the files its frame
//! fills name (ELF images), in one byte string. `no_std`, no allocator to
//! read; the writer is host-only.
//!
//! Layout, little-endian: magic `pvBN`, `u32` version, `u32` entry count,
//! then per entry a `u32` name length, the UTF-8 name, a `u64` data length
//! and the data. The spec is the entry named [`SPEC`].

/// The first bytes of every bundle.
pub const MAGIC: [u8; 4] = *b"pvBN";
/// Bumped on every change to the layout.
pub const VERSION: u32 = 1;
/// The name of the entry that holds the serialized spec.
pub const SPEC: &str = "spec";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    BadMagic,
    UnsupportedVersion(u32),
    /// The bytes end inside the entry with this number.
    Truncated {
        entry: u32,
    },
    BadName {
        entry: u32,
    },
    TrailingBytes {
        offset: usize,
    },
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::BadMagic => f.write_str("not a previrt bundle"),
            BundleError::UnsupportedVersion(v) => {
                write!(f, "bundle version {v}, this reader knows {VERSION}")
            }
            BundleError::Truncated { entry } => write!(f, "bundle ends inside entry {entry}"),
            BundleError::BadName { entry } => {
                write!(f, "bundle entry {entry} has a name that is not UTF-8")
            }
            BundleError::TrailingBytes { offset } => {
                write!(f, "bytes after the last bundle entry, at {offset}")
            }
        }
    }
}

/// A checked bundle: every entry is within the bytes.
#[derive(Clone, Copy, Debug)]
pub struct Bundle<'a> {
    bytes: &'a [u8],
    count: u32,
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(n)?;
    let slice = bytes.get(*at..end)?;
    *at = end;
    Some(slice)
}

fn number(bytes: &[u8], at: &mut usize, n: usize) -> Option<u64> {
    let raw = take(bytes, at, n)?;
    Some(
        raw.iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

impl<'a> Bundle<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        if bytes.get(..4) != Some(&MAGIC[..]) {
            return Err(BundleError::BadMagic);
        }
        let mut at = 4;
        let version = number(bytes, &mut at, 4).ok_or(BundleError::Truncated { entry: 0 })? as u32;
        if version != VERSION {
            return Err(BundleError::UnsupportedVersion(version));
        }
        let count = number(bytes, &mut at, 4).ok_or(BundleError::Truncated { entry: 0 })? as u32;
        let bundle = Bundle { bytes, count };
        let mut checked = 0;
        let mut it = bundle.walk(at);
        while checked < count {
            match it.next() {
                Some(Ok(_)) => checked += 1,
                Some(Err(e)) => return Err(e),
                None => return Err(BundleError::Truncated { entry: checked }),
            }
        }
        if it.at != bytes.len() {
            return Err(BundleError::TrailingBytes { offset: it.at });
        }
        Ok(bundle)
    }

    fn walk(&self, at: usize) -> Walk<'a> {
        Walk {
            bytes: self.bytes,
            at,
            entry: 0,
            count: self.count,
        }
    }

    /// The entries as (name, data), in order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.walk(12).map_while(Result::ok)
    }

    /// The data of the entry named `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.entries().find(|(n, _)| *n == name).map(|(_, d)| d)
    }
}

struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    entry: u32,
    count: u32,
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<(&'a str, &'a [u8]), BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.entry == self.count {
            return None;
        }
        let entry = self.entry;
        self.entry += 1;
        let truncated = BundleError::Truncated { entry };
        let item = (|| {
            let name_len = number(self.bytes, &mut self.at, 4).ok_or(truncated)? as usize;
            let name = take(self.bytes, &mut self.at, name_len).ok_or(truncated)?;
            let name = core::str::from_utf8(name).map_err(|_| BundleError::BadName { entry })?;
            let data_len = usize::try_from(number(self.bytes, &mut self.at, 8).ok_or(truncated)?)
                .map_err(|_| truncated)?;
            let data = take(self.bytes, &mut self.at, data_len).ok_or(truncated)?;
            Ok((name, data))
        })();
        Some(item)
    }
}

/// Writes a bundle of `entries` (host side).
#[cfg(feature = "std")]
pub fn write(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (name, data) in entries {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_finds_entries() {
        let bytes = write(&[(SPEC, b"abc"), ("guest.elf", b"\x7fELF")]);
        let b = Bundle::parse(&bytes).unwrap();
        assert_eq!(b.get(SPEC), Some(&b"abc"[..]));
        assert_eq!(b.get("guest.elf"), Some(&b"\x7fELF"[..]));
        assert_eq!(b.get("nope"), None);
        assert_eq!(b.entries().count(), 2);
    }

    #[test]
    fn every_truncation_and_bad_header_is_refused() {
        let bytes = write(&[(SPEC, b"abc"), ("x", b"12345")]);
        for n in 0..bytes.len() {
            assert!(
                Bundle::parse(&bytes[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            Bundle::parse(&extra).unwrap_err(),
            BundleError::TrailingBytes {
                offset: bytes.len()
            }
        );
        let mut version = bytes.clone();
        version[4] = 9;
        assert_eq!(
            Bundle::parse(&version).unwrap_err(),
            BundleError::UnsupportedVersion(9)
        );
    }
}
