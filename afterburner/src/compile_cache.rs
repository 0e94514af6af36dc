//! The content-addressed compile cache of `afterburn cc`: the compiler's
//! assembly (`-S`) for a translation unit, its diagnostics, and the object
//! `as` makes of it unpadded, stored under a key that names everything the
//! assembly depends on. A plain build (`--afterburn-no-pad`) fills it; a
//! padded build of the same source reuses the assembly and pads it, and for
//! a unit the pass leaves unchanged (no records) reuses the object itself
//! (docs/afterburner.md, "The compile cache").
//!
//! Layout: `DIR/KK/KEY.s`, `KEY.diag`, `KEY.o` (KK = the key's first two
//! hex digits). Every file is written under a temporary name and renamed,
//! so parallel compilers (`make -j`) never see half an entry; `.diag` is
//! renamed before `.s`, so an entry with assembly has its diagnostics.

use crate::sha256::Sha256;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a key is made of. Everything the compiler's `-S` output can depend
/// on is in it:
/// - the preprocessed translation unit, byte for byte (`-E` output: every
///   header, macro and `-D` already applied; line markers included — no
///   normalisation, so the cached assembly is exactly what the compiler
///   writes for this input, `.file` and `.loc` directives too);
/// - every argument of the invocation but the output path (the input's path
///   names the `.file` directive; code-generating flags, `-W` flags whose
///   diagnostics are replayed, and the dependency flags, which change
///   nothing but cost nothing to keep);
/// - the compiler's identity (`CC -v`: version, target, configuration) and
///   the assembler's (`as --version`), which makes the cached object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn new(
        preprocessed: &[u8],
        args: &[OsString],
        compiler_identity: &[u8],
        assembler_identity: &[u8],
    ) -> Key {
        let mut h = Sha256::new();
        let mut part = |name: &str, bytes: &[u8]| {
            // Name and length prefixes keep parts from running together.
            h.update(name.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part("afterburn compile cache", b"1");
        part("compiler", compiler_identity);
        part("assembler", assembler_identity);
        for a in args {
            part("arg", a.to_string_lossy().as_bytes());
        }
        part("preprocessed", preprocessed);
        Key(h.hex())
    }

    pub fn hex(&self) -> &str {
        &self.0
    }
}

/// One stored translation unit.
#[derive(Debug)]
pub struct Entry {
    pub assembly: PathBuf,
    /// What the compiler printed (warnings) when it made the assembly:
    /// replayed on every reuse, as a rebuild with the compiler would.
    pub diagnostics: Vec<u8>,
    /// The unpadded object, if the plain build stored one.
    pub object: Option<PathBuf>,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &Key, ext: &str) -> PathBuf {
        self.dir.join(&key.0[..2]).join(format!("{}.{ext}", key.0))
    }

    pub fn lookup(&self, key: &Key) -> Option<Entry> {
        let assembly = self.path(key, "s");
        if !assembly.is_file() {
            return None;
        }
        let diagnostics = std::fs::read(self.path(key, "diag")).ok()?;
        let object = Some(self.path(key, "o")).filter(|p| p.is_file());
        Some(Entry {
            assembly,
            diagnostics,
            object,
        })
    }

    pub fn store_assembly(
        &self,
        key: &Key,
        assembly: &[u8],
        diagnostics: &[u8],
    ) -> std::io::Result<()> {
        self.store(key, "diag", diagnostics)?;
        self.store(key, "s", assembly)
    }

    pub fn store_object(&self, key: &Key, object: &Path) -> std::io::Result<()> {
        self.store(key, "o", &std::fs::read(object)?)
    }

    fn store(&self, key: &Key, ext: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key, ext);
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Appends one line to `DIR/events`: what a build did with the cache
    /// (`plain stored`, `padded reused-assembly`, ...), for its statistics.
    /// A short `O_APPEND` write is atomic, so parallel compilers' lines do
    /// not mix. Failing to log does not fail the compile.
    pub fn log(&self, event: &str, input: &Path) {
        let line = format!("{event} {}\n", input.display());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events"))
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pre: &[u8], args: &[&str]) -> Key {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Key::new(pre, &args, b"gcc 12", b"as 2.40")
    }

    #[test]
    fn every_part_of_the_key_counts() {
        let k = key(b"int x;", &["-O2", "a.c"]);
        assert_eq!(k, key(b"int x;", &["-O2", "a.c"]));
        assert_ne!(k, key(b"int y;", &["-O2", "a.c"]));
        assert_ne!(k, key(b"int x;", &["-O1", "a.c"]));
        assert_ne!(k, key(b"int x;", &["-O2", "b.c"]));
        // Arguments are kept apart: "-O2" "a.c" is not "-O2a" ".c".
        assert_ne!(k, key(b"int x;", &["-O2a", ".c"]));
        let args = [OsString::from("-O2"), OsString::from("a.c")];
        assert_ne!(k, Key::new(b"int x;", &args, b"gcc 13", b"as 2.40"));
        assert_ne!(k, Key::new(b"int x;", &args, b"gcc 12", b"as 2.41"));
        assert_eq!(k.hex().len(), 64);
    }

    #[test]
    fn entries_round_trip_and_objects_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(dir.path()).unwrap();
        let k = key(b"int x;", &["a.c"]);
        assert!(cache.lookup(&k).is_none());
        cache
            .store_assembly(&k, b"\t.text\n", b"a.c:1: warning: w\n")
            .unwrap();
        let e = cache.lookup(&k).unwrap();
        assert_eq!(std::fs::read(&e.assembly).unwrap(), b"\t.text\n");
        assert_eq!(e.diagnostics, b"a.c:1: warning: w\n");
        assert!(e.object.is_none());
        let obj = dir.path().join("a.o");
        std::fs::write(&obj, b"\x7fELF").unwrap();
        cache.store_object(&k, &obj).unwrap();
        let e = cache.lookup(&k).unwrap();
        assert_eq!(std::fs::read(e.object.unwrap()).unwrap(), b"\x7fELF");
        // Another key is another entry.
        assert!(cache.lookup(&key(b"int y;", &["a.c"])).is_none());
        cache.log("plain stored", Path::new("a.c"));
        cache.log("padded reused-object", Path::new("a.c"));
        let events = std::fs::read_to_string(dir.path().join("events")).unwrap();
        assert_eq!(events, "plain stored a.c\npadded reused-object a.c\n");
    }
}
