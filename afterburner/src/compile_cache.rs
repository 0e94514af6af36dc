//! The content-addressed compile cache of `afterburn cc`: the compiler's
//! assembly (`-S`) for a translation unit, its diagnostics, and the object
//! `as` makes of it unpadded, stored under a key that names everything the
//! assembly depends on. A plain build (`--afterburn-no-pad`) fills it; a
//! padded build of the same source reuses the assembly and pads it, and for
//! a unit the pass leaves unchanged (no records) reuses the object itself
//! (docs/afterburner.md, "The compile cache").
//!
//! The direct mode skips the preprocessor for a unit seen before: a
//! [`Manifest`] stored under a [`DirectKey`] (the preprocessing command
//! line and the tools) names every file the preprocessor read, with its
//! digest, and the [`Key`] the preprocessed text had; while every file
//! still has that digest, the unit's preprocessed text is the one that
//! made that key (docs/afterburner.md, "The direct mode").
//!
//! Layout: `DIR/KK/KEY.s`, `KEY.diag`, `KEY.o`, and `DIRECT.manifest` (KK
//! = the key's first two hex digits). Every file is written under a temporary name and renamed,
//! so parallel compilers (`make -j`) never see half an entry; `.diag` is
//! renamed before `.s`, so an entry with assembly has its diagnostics.

use crate::sha256::Sha256;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
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

    /// A key read back from a manifest: 64 lowercase hex digits.
    fn from_hex(hex: &str) -> Option<Key> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Key(hex.to_string()))
    }
}

/// The direct mode's key: what, besides the files it reads, decides what
/// the preprocessor writes (the preprocessed text and the dependency
/// file): its whole command line but the temporary output, and the
/// compiler's and the assembler's identity (as in [`Key`]). Not the
/// working directory: relative paths are read from the current one, so
/// two build trees with the same relative layout (Linux's plain and padded
/// `O=` folders) share manifests, each checked against its own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectKey(String);

impl DirectKey {
    pub fn new(
        preprocess_args: &[OsString],
        compiler_identity: &[u8],
        assembler_identity: &[u8],
    ) -> DirectKey {
        let mut h = Sha256::new();
        let mut part = |name: &str, bytes: &[u8]| {
            h.update(name.as_bytes());
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part("afterburn direct key", b"1");
        part("compiler", compiler_identity);
        part("assembler", assembler_identity);
        for a in preprocess_args {
            part("arg", a.as_bytes());
        }
        DirectKey(h.hex())
    }
}

/// Macros whose value is not in any file: a unit that names one (even in
/// a comment: the check is on bytes) gets no manifest.
const UNREPEATABLE_MACROS: [&[u8]; 3] = [b"__DATE__", b"__TIME__", b"__TIMESTAMP__"];

/// What the preprocessor read for one unit and what it made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The key of the preprocessed text.
    pub key: Key,
    /// Every file it read (the source, each header, `-include` files),
    /// with the SHA-256 of its contents then.
    pub inputs: Vec<(PathBuf, String)>,
    /// The dependency file it wrote, if the command asked for one: written
    /// again on a direct hit, as the preprocessor would have.
    pub depfile: Option<Vec<u8>>,
}

const MANIFEST_MAGIC: &[u8] = b"afterburn manifest 1\n";

impl Manifest {
    /// The manifest of a unit just preprocessed: the files are those its
    /// line markers name (every file the preprocessor entered, system
    /// headers too, whatever the dependency flags ask for), read now.
    /// None if one cannot be read or uses a date or time macro.
    pub fn of_unit(key: &Key, preprocessed: &[u8], depfile: Option<Vec<u8>>) -> Option<Manifest> {
        let mut inputs = Vec::new();
        for path in files_entered(preprocessed)? {
            let contents = std::fs::read(&path).ok()?;
            if UNREPEATABLE_MACROS
                .iter()
                .any(|m| contents.windows(m.len()).any(|w| w == *m))
            {
                return None;
            }
            inputs.push((path, digest(&contents)));
        }
        Some(Manifest {
            key: key.clone(),
            inputs,
            depfile,
        })
    }

    /// Whether every file still has the contents it had.
    pub fn still_holds(&self) -> bool {
        self.inputs
            .iter()
            .all(|(path, hex)| std::fs::read(path).is_ok_and(|contents| digest(&contents) == *hex))
    }

    /// `MAGIC`, `key HEX`, per file `file HEX LEN` and the path's bytes,
    /// `depfile LEN` and its bytes: lengths, so any byte may be in a path.
    fn encode(&self) -> Vec<u8> {
        let mut out = MANIFEST_MAGIC.to_vec();
        out.extend_from_slice(format!("key {}\n", self.key.hex()).as_bytes());
        for (path, hex) in &self.inputs {
            let bytes = path.as_os_str().as_bytes();
            out.extend_from_slice(format!("file {hex} {}\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
            out.push(b'\n');
        }
        if let Some(d) = &self.depfile {
            out.extend_from_slice(format!("depfile {}\n", d.len()).as_bytes());
            out.extend_from_slice(d);
            out.push(b'\n');
        }
        out
    }

    /// The manifest `encode` wrote; None for anything else (a damaged
    /// manifest is a miss, never a wrong hit).
    fn decode(bytes: &[u8]) -> Option<Manifest> {
        let mut rest = bytes.strip_prefix(MANIFEST_MAGIC)?;
        let key = Key::from_hex(take_line(&mut rest)?.strip_prefix("key ")?)?;
        let mut inputs = Vec::new();
        let mut depfile = None;
        while !rest.is_empty() {
            let head = take_line(&mut rest)?;
            let words: Vec<&str> = head.split(' ').collect();
            match words.as_slice() {
                ["file", hex, len] if depfile.is_none() && Key::from_hex(hex).is_some() => {
                    let path = take_blob(&mut rest, len.parse().ok()?)?;
                    inputs.push((PathBuf::from(OsStr::from_bytes(&path)), hex.to_string()));
                }
                ["depfile", len] if depfile.is_none() => {
                    depfile = Some(take_blob(&mut rest, len.parse().ok()?)?);
                }
                _ => return None,
            }
        }
        Some(Manifest {
            key,
            inputs,
            depfile,
        })
    }
}

/// The text up to the next newline, which is consumed.
fn take_line(rest: &mut &[u8]) -> Option<String> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..end]).ok()?.to_string();
    *rest = &rest[end + 1..];
    Some(line)
}

/// `len` bytes and the newline after them, which are consumed.
fn take_blob(rest: &mut &[u8], len: usize) -> Option<Vec<u8>> {
    let blob = rest.get(..len)?.to_vec();
    *rest = rest.get(len..)?.strip_prefix(b"\n")?;
    Some(blob)
}

fn digest(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.hex()
}

/// The files a preprocessed unit's line markers name (`# 12 "path" 1`),
/// each once, in order; the first is the source. None if a name is
/// escaped in a way not undone here (the file would not be the one read).
/// `<built-in>`, `<command-line>` and `<stdin>` are not files.
fn files_entered(preprocessed: &[u8]) -> Option<Vec<PathBuf>> {
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for line in preprocessed.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"# ") else {
            continue;
        };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let Some(quoted) = rest[digits..].strip_prefix(b" \"") else {
            continue;
        };
        if digits == 0 {
            continue;
        }
        let mut name = Vec::new();
        let mut bytes = quoted.iter();
        loop {
            match bytes.next()? {
                b'"' => break,
                b'\\' => match bytes.next()? {
                    c @ (b'\\' | b'"') => name.push(*c),
                    _ => return None,
                },
                c => name.push(*c),
            }
        }
        if name.starts_with(b"<") && name.ends_with(b">") {
            continue;
        }
        if seen.insert(name.clone()) {
            files.push(PathBuf::from(OsStr::from_bytes(&name)));
        }
    }
    Some(files)
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

    /// The manifest stored under `key`, if there is a readable one.
    pub fn manifest(&self, key: &DirectKey) -> Option<Manifest> {
        let path = self
            .dir
            .join(&key.0[..2])
            .join(format!("{}.manifest", key.0));
        Manifest::decode(&std::fs::read(path).ok()?)
    }

    /// Stores (or replaces: the latest preprocessing wins) a manifest.
    pub fn store_manifest(&self, key: &DirectKey, manifest: &Manifest) -> std::io::Result<()> {
        self.store(&Key(key.0.clone()), "manifest", &manifest.encode())
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
    fn line_markers_name_each_file_once_and_not_the_built_ins() {
        let pre = b"# 0 \"a.c\"\n# 0 \"<built-in>\"\n# 0 \"<command-line>\"\n\
# 1 \"/usr/include/stdc-predef.h\" 1 3 4\n# 1 \"a.c\"\n# 1 \"dir/q\\\"x\\\\.h\" 1\n\
int x;\n#pragma once\n# 2 \"a.c\" 2\n";
        let files = files_entered(pre).unwrap();
        let names: Vec<_> = files.iter().map(|p| p.to_string_lossy()).collect();
        assert_eq!(names, ["a.c", "/usr/include/stdc-predef.h", "dir/q\"x\\.h"]);
        // An escape the preprocessor's quoting does not make: no list.
        assert_eq!(files_entered(b"# 1 \"a\\nb.h\" 1\n"), None);
        assert_eq!(files_entered(b"# 1 \"unterminated\n"), None);
    }

    #[test]
    fn a_manifest_round_trips_and_sees_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("h with space.h");
        std::fs::write(&h, "#define X 1\n").unwrap();
        let pre = format!("# 0 \"{}\"\nint x = 1;\n", h.display());
        let k = key(b"int x = 1;", &["a.c"]);
        let m = Manifest::of_unit(&k, pre.as_bytes(), Some(b"a.o: a.c h.h\n".to_vec())).unwrap();
        assert_eq!(m.inputs.len(), 1);
        assert_eq!(Manifest::decode(&m.encode()), Some(m.clone()));
        let none = Manifest {
            depfile: None,
            ..m.clone()
        };
        assert_eq!(Manifest::decode(&none.encode()), Some(none));
        // Damaged: never a manifest.
        let bytes = m.encode();
        for cut in [1, 20, bytes.len() - 1] {
            assert_eq!(Manifest::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        assert!(m.still_holds());
        std::fs::write(&h, "#define X 2\n").unwrap();
        assert!(!m.still_holds());
        std::fs::remove_file(&h).unwrap();
        assert!(!m.still_holds());
        // A unit that uses the date gets none.
        std::fs::write(&h, "const char *d = __DATE__;\n").unwrap();
        assert_eq!(Manifest::of_unit(&k, pre.as_bytes(), None), None);
        // Stored and found under its direct key only.
        let cache = CompileCache::open(dir.path()).unwrap();
        let args = [OsString::from("-E"), OsString::from("a.c")];
        let dk = DirectKey::new(&args, b"gcc 12", b"as 2.40");
        assert!(cache.manifest(&dk).is_none());
        cache.store_manifest(&dk, &m).unwrap();
        assert_eq!(cache.manifest(&dk), Some(m));
        assert!(cache
            .manifest(&DirectKey::new(&args, b"gcc 13", b"as 2.40"))
            .is_none());
        assert_ne!(dk, DirectKey::new(&args[..1], b"gcc 12", b"as 2.40"));
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
