//! What can be wrong with a system description or its images.

use core::fmt;

/// Where in the description a problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// A line and column (1-based, columns in characters) of the TOML text.
    Pos {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// A key path, for what has no place in the text (a missing table).
    Key(String),
}

impl At {
    /// The line and column of byte `offset` of `source`.
    pub(crate) fn of_offset(source: &str, offset: usize) -> At {
        let offset = offset.min(source.len());
        let before = source.get(..offset).unwrap_or(source);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        At::Pos { line, col }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Pos { line, col } => write!(f, "{line}:{col}"),
            At::Key(key) => write!(f, "{key}"),
        }
    }
}

/// A problem of the description itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The TOML does not parse or does not have the expected shape.
    #[error("{0}")]
    Toml(String),
    /// No `[vmm]` table.
    #[error("missing [vmm] table")]
    MissingVmm,
    /// No `[[guest]]` table.
    #[error("no [[guest]]: a system needs at least one guest")]
    NoGuest,
    /// A `vtlb` strategy the VMM does not have.
    #[error("unknown vtlb strategy `{0}`: one of {names}", names = crate::generate::vtlb_names())]
    UnknownVtlbStrategy(String),
    /// More guests than a system holds.
    #[error("{0} guests: at most {max}", max = crate::generate::MAX_SYSTEM_GUESTS)]
    TooManyGuests(usize),
    /// Several guests, but no supervisor image to share the machine's devices.
    #[error("{0} guests need `supervisor = IMAGE` in [vmm]: the task that owns the timer and the exit port for them")]
    NoSupervisor(usize),
    /// A command line longer than the VMM's start page holds.
    #[error("the command line is {0} bytes long: at most {max}", max = crate::generate::MAX_CMDLINE)]
    CmdlineTooLong(usize),
    /// An `initrd` for a guest that is not Linux (`linux = true`).
    #[error("`initrd` is for a Linux guest: add `linux = true`")]
    InitrdWithoutLinux,
    /// A number outside its range.
    #[error("`{key}` is {value}: must be {min}..={max}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// What it says.
        value: i64,
        /// Lowest accepted.
        min: i64,
        /// Highest accepted.
        max: i64,
    },
    /// `ram_kib` that does not make whole 4 KiB frames.
    #[error("guest RAM of {0} KiB is not a multiple of 4 KiB (guest RAM is 4 KiB frames)")]
    RamNotPageMultiple(i64),
    /// Neither or both of `ram_mib` and `ram_kib`.
    #[error("give the guest's RAM size as exactly one of `ram_mib` and `ram_kib`")]
    RamSize,
    /// The guests' RAM together needs more frame objects than a spec holds.
    #[error("{mib} MiB of guest RAM in all: at most {max_mib} MiB (every 4 KiB frame is an object of the spec)")]
    RamTooLarge {
        /// All guests' RAM.
        mib: u64,
        /// The limit.
        max_mib: u64,
    },
    /// A guest name that cannot prefix CapDL object names.
    #[error("guest name `{0}` must be a letter followed by letters, digits and `_`")]
    BadGuestName(String),
    /// A guest name the system's own objects use.
    #[error("guest name `{0}` is reserved (the system's own objects start with it)")]
    ReservedGuestName(String),
    /// Two guests with one name.
    #[error("two guests are named `{0}`")]
    DuplicateGuest(String),
    /// An image name that cannot be a CapDL `elf:` or fill file name.
    #[error("image name `{0}` must be a letter followed by letters, digits, `_`, `-`, `.` (no `--` or `..`)")]
    BadImageName(String),
    /// An image name no `--image` gives.
    #[error("no image named `{name}` (give it with --image {name}=PATH{known})")]
    UnknownImage {
        /// The name.
        name: String,
        /// ", images given: a, b" or nothing.
        known: String,
    },
}

/// A problem of the description, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct DescriptionError {
    /// Where.
    pub at: At,
    /// What.
    pub problem: Problem,
}

/// A problem of an ELF image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageProblem {
    /// Not an image the ELF reader accepts.
    #[error(transparent)]
    Elf(#[from] crate::elf::ElfError),
    /// Two VMM segments share bytes.
    #[error("segments {0} and {1} overlap")]
    SegmentOverlap(usize, usize),
    /// A VMM segment outside the region the VMM's image may use.
    #[error("segment {index} at {start:#x}..{end:#x} is outside 0..{limit:#x}, where the VMM's image must be")]
    VmmSegmentOutside {
        /// Program header index.
        index: usize,
        /// First byte.
        start: u64,
        /// Past the last byte.
        end: u64,
        /// [`crate::generate::VMM_IMAGE_LIMIT`].
        limit: u64,
    },
    /// The VMM's entry point is in no segment.
    #[error("entry point {0:#x} is in no PT_LOAD segment")]
    EntryOutside(u64),
    /// A guest segment outside the guest's RAM.
    #[error("segment {index} at physical {start:#x}..{end:#x} does not fit in the guest's {ram:#x} bytes of RAM")]
    GuestSegmentOutsideRam {
        /// Program header index.
        index: usize,
        /// First byte.
        start: u64,
        /// Past the last byte.
        end: u64,
        /// RAM bytes.
        ram: u64,
    },
    /// More bytes than the generator carries.
    #[error("{bytes:#x} bytes: at most {max:#x}")]
    TooLarge {
        /// The image's (or its segments') size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
}

/// Why no spec was generated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The description is wrong.
    #[error(transparent)]
    Description(#[from] DescriptionError),
    /// An image is wrong.
    #[error("image `{name}`: {problem}")]
    Image {
        /// The image's name.
        name: String,
        /// What is wrong.
        problem: ImageProblem,
    },
    /// The generator built something the spec builder or the validator
    /// refuses: a bug here, never a problem of the input.
    #[error("generator bug: {0}")]
    Invalid(crate::build::BuildError),
}
