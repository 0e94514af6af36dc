//! Replaying a recorded page-table trace ([`crate::record`], format in
//! [`crate::trace`]) on the host under any vTLB strategy: the same
//! [`Vtlb`] the VMM runs, over a model of the guest's seL4 address space
//! and host RAM holding the guest's page tables as the trace rebuilds
//! them (docs/vtlb.md, "Record and replay"). Host only (std).
//!
//! Each recorded fault is an access the guest made: it faults under the
//! strategy only if the model has no mapping of its page with the rights
//! it needs, and is then served as the VMM serves a fault
//! ([`crate::guest`]'s `page_fault`): a walk of the guest's tables, the
//! wedge's memory mapped read-only, a fault the tables do not allow
//! reflected into the guest. A guest's processes are modelled as the VMM
//! runs them: user views ([`UserViews`]) entered at each `U` record, a
//! process's faults (`P`) served in the view entered last
//! (`user_mode.rs`'s `user_page_fault`), every event through the same
//! [`Spaces`] as the VMM's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;

use previrt_protocol::{WEDGE_AREA, WEDGE_BASE};

use crate::ending::in_wedge;
use crate::ram::host::HostRam;
use crate::spaces::Spaces;
use crate::trace::{Checksum, Record, TraceError, PREFIX, VERSION};
use crate::views::{user_fault, UserFault, UserViews, View};
use crate::vtlb::{MapError, Mapper, Vtlb, VtlbStrategy};
use crate::walk::{mark_used, walk_keeping_upper, Translation};

/// The most guest RAM a trace may ask the host for.
pub const MAX_RAM: u64 = 1 << 30;

/// Why a trace cannot be replayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Line `line` (from 1, of the trace's lines) is not a record.
    Record { line: usize, error: TraceError },
    /// No trace line at all.
    NoTrace,
    /// The first record is not a header, or a header comes later.
    Header { line: usize },
    /// A version this reader does not know.
    Version(u64),
    /// Guest RAM of this size cannot be modelled (0, unaligned or over
    /// [`MAX_RAM`]).
    RamSize(u64),
    /// The trace has no end record: it was cut short.
    Truncated { records: u64 },
    /// The end record's count or checksum does not match what came before.
    Corrupt {
        records: u64,
        counted: u64,
        checksum: u64,
        computed: u64,
    },
    /// Records after the end.
    AfterEnd { line: usize },
    /// A table word outside guest RAM (or unaligned).
    WriteOutsideRam { line: usize, gpa: u64 },
    /// The strategy's mapper failed (the model's capacity).
    Mapping { line: usize, what: String },
    /// A process's fault before the guest entered user mode.
    UserFaultOutsideUserMode { line: usize },
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::Record { line, error } => write!(f, "trace line {line}: {error}"),
            ReplayError::NoTrace => write!(f, "no `{}` line: nothing was recorded", PREFIX.trim()),
            ReplayError::Header { line } => {
                write!(f, "trace line {line}: the header must come first, once")
            }
            ReplayError::Version(v) => write!(f, "trace version {v}, this reader knows {VERSION}"),
            ReplayError::RamSize(s) => write!(f, "guest RAM of {s:#x} bytes cannot be modelled"),
            ReplayError::Truncated { records } => {
                write!(f, "the trace ends after {records} records without its end record: cut short")
            }
            ReplayError::Corrupt {
                records,
                counted,
                checksum,
                computed,
            } => write!(
                f,
                "the trace's end says {records} records with checksum {checksum:x}, but {counted} came with checksum {computed:x}"
            ),
            ReplayError::AfterEnd { line } => write!(f, "trace line {line}: records after the end"),
            ReplayError::WriteOutsideRam { line, gpa } => {
                write!(f, "trace line {line}: table word {gpa:#x} is outside guest RAM")
            }
            ReplayError::Mapping { line, what } => {
                write!(f, "trace line {line}: the model could not map: {what}")
            }
            ReplayError::UserFaultOutsideUserMode { line } => write!(
                f,
                "trace line {line}: a process's fault, but the guest is not in user mode"
            ),
        }
    }
}

/// A whole, checked trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub ram: u64,
    pub cr3: u64,
    pub wedge: Option<u64>,
    /// The records between the header and the end.
    pub records: Vec<Record>,
    /// The trace's size as recorded (its lines' bytes, prefix included).
    pub bytes: u64,
}

impl Trace {
    /// Reads the trace from a run's serial output: the lines starting with
    /// [`PREFIX`], in order; the others are ignored. Never panics; a trace
    /// cut short, altered or of another version is refused.
    pub fn parse(serial: &str) -> Result<Trace, ReplayError> {
        let mut header = None;
        let mut records = Vec::new();
        let mut checksum = Checksum::default();
        let mut counted = 0u64;
        let mut ended = false;
        let mut bytes = 0u64;
        for (n, text) in serial
            .lines()
            .filter_map(|l| l.strip_prefix(PREFIX))
            .enumerate()
        {
            let line = n + 1;
            bytes += (PREFIX.len() + text.len() + 1) as u64;
            if ended {
                return Err(ReplayError::AfterEnd { line });
            }
            let record =
                Record::parse(text).map_err(|error| ReplayError::Record { line, error })?;
            match record {
                Record::End {
                    records: said,
                    checksum: sum,
                } => {
                    if said != counted || sum != checksum.0 {
                        return Err(ReplayError::Corrupt {
                            records: said,
                            counted,
                            checksum: sum,
                            computed: checksum.0,
                        });
                    }
                    ended = true;
                    continue;
                }
                Record::Header {
                    version,
                    ram,
                    cr3,
                    wedge,
                } if line == 1 => {
                    if version != VERSION {
                        return Err(ReplayError::Version(version));
                    }
                    if ram == 0 || ram % 4096 != 0 || ram > MAX_RAM {
                        return Err(ReplayError::RamSize(ram));
                    }
                    header = Some((ram, cr3, wedge));
                }
                Record::Header { .. } => return Err(ReplayError::Header { line }),
                _ if line == 1 => return Err(ReplayError::Header { line }),
                other => records.push(other),
            }
            checksum.add_line(text);
            counted += 1;
        }
        let Some((ram, cr3, wedge)) = header else {
            return Err(ReplayError::NoTrace);
        };
        if !ended {
            return Err(ReplayError::Truncated { records: counted });
        }
        Ok(Trace {
            ram,
            cr3,
            wedge,
            records,
            bytes,
        })
    }

    /// Recorded faults.
    pub fn faults(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r, Record::Fault { .. }))
            .count()
    }
}

/// A model of the guest's seL4 address space, with the rules a kernel
/// enforces (one mapping per page; unmapping a handle that is not mapped is
/// an error): what is mapped where, and the paging structures seL4 would
/// have needed (they stay, as the VMM's do). The vTLB's host tests use it
/// too.
#[derive(Default, Debug)]
pub struct ModelSpace {
    /// va → (handle, gpa, writable)
    pub(crate) pages: BTreeMap<u64, (u64, u64, bool)>,
    next: u64,
    /// Paging structures below the root: (level, index of the region).
    structures: BTreeSet<(u8, u64)>,
    /// Mappings it may still make (resources), if limited (tests).
    pub(crate) budget: Option<usize>,
}

/// Why the model would not unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotMapped(pub u64);

impl ModelSpace {
    /// Whether an access to `va` needs no fault: its page is mapped,
    /// writable if the access writes.
    pub fn allows(&self, va: u64, write: bool) -> bool {
        self.pages
            .get(&(va & !0xfff))
            .is_some_and(|&(_, _, writable)| writable || !write)
    }

    /// The paging structures made so far (page-directory-pointer tables,
    /// page directories, page tables).
    pub fn structures(&self) -> usize {
        self.structures.len()
    }

    fn need_structures(&mut self, va: u64) {
        for (level, shift) in [(3u8, 39), (2, 30), (1, 21)] {
            self.structures.insert((level, va >> shift));
        }
    }
}

impl Mapper for ModelSpace {
    type Error = NotMapped;
    fn map(&mut self, va: u64, t: Translation) -> Result<u64, MapError<NotMapped>> {
        debug_assert_eq!(va & 0xfff, 0, "the vTLB maps pages");
        if self.pages.contains_key(&va) {
            return Err(MapError::Occupied);
        }
        if let Some(b) = &mut self.budget {
            if *b == 0 {
                return Err(MapError::Full);
            }
            *b -= 1;
        }
        self.need_structures(va);
        self.next += 1;
        self.pages.insert(va, (self.next, t.gpa, t.writable));
        Ok(self.next)
    }
    fn unmap(&mut self, handle: u64, gpa: u64) -> Result<(), NotMapped> {
        let va = self
            .pages
            .iter()
            .find(|(_, &(h, g, _))| h == handle && g == gpa)
            .map(|(&va, _)| va)
            .ok_or(NotMapped(handle))?;
        self.pages.remove(&va);
        Ok(())
    }
    fn verify(&self, handle: u64, gpa: u64) -> Result<(), &'static str> {
        match self.pages.values().find(|(h, ..)| *h == handle) {
            Some(&(_, g, _)) if g == gpa => Ok(()),
            Some(_) => Err("the handle maps another frame"),
            None => Err("the handle maps nothing"),
        }
    }
}

/// What a replay counts: the columns of the experiment's CSV.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Accesses that faulted under the strategy (each mapped or reflected).
    pub faults: u64,
    pub maps: u64,
    pub unmaps: u64,
    /// seL4 paging structures the mappings needed (the wedge's included).
    pub paging_objects: u64,
    pub peak_mappings: u64,
    /// With the checker: mappings found unjustified at invalidation points.
    pub violations: u64,
    pub first_violation: Option<String>,
    /// Faults the guest's tables did not allow (reflected as #PF).
    pub reflected: u64,
}

/// Replays `trace` under `strategy`, with the checker on or off.
pub fn replay(trace: &Trace, strategy: VtlbStrategy, check: bool) -> Result<Outcome, ReplayError> {
    let host = HostRam::new(trace.ram);
    let ram = host.ram();
    let mut kernel = Vtlb::boxed(ModelSpace::default());
    let mut views = UserViews::<ModelSpace>::boxed();
    let reserved = trace.wedge.map_or((0, 0), |w| (w, w + WEDGE_AREA));
    kernel.clear(strategy, check, reserved);
    views.clear(strategy, check, reserved);
    let wedge_area = reserved.0..reserved.1;
    if trace.wedge.is_some() {
        // The wedge's pages, mapped before the guest starts (not the
        // vTLB's): their paging structures count.
        for page in (WEDGE_BASE..WEDGE_BASE + WEDGE_AREA).step_by(4096) {
            kernel.mapper.need_structures(page);
        }
    }
    let mut cr3 = trace.cr3;
    let mut outcome = Outcome::default();
    // The view entered at the last `U`, until a reflected fault leaves it.
    let mut current = None;
    let mut peak = 0;
    for (n, record) in trace.records.iter().enumerate() {
        // Line numbers as `Trace::parse` counts them (the header is 1).
        let line = n + 2;
        let failed = |e: &dyn fmt::Debug| ReplayError::Mapping {
            line,
            what: std::format!("{e:?}"),
        };
        let mut spaces = Spaces {
            kernel: &mut kernel,
            views: Some(&mut views),
        };
        match *record {
            Record::Write { gpa, value } => {
                if gpa % 8 != 0 {
                    return Err(ReplayError::WriteOutsideRam { line, gpa });
                }
                ram.write_u64(gpa, value)
                    .map_err(|_| ReplayError::WriteOutsideRam { line, gpa })?;
            }
            Record::Fault { va, write } => {
                if spaces.kernel.mapper.allows(va, write) {
                    continue;
                }
                outcome.faults += 1;
                let walked = walk_keeping_upper(&ram, cr3, va);
                match walked.result {
                    // A write there ends a real run; a read maps read-only.
                    Ok(t) if wedge_area.contains(&t.gpa) => {
                        if !write {
                            let t = Translation {
                                writable: false,
                                ..t
                            };
                            spaces.kernel.map(va, t, 0).map_err(|e| failed(&e))?;
                        }
                    }
                    Ok(t) if t.writable || !write => {
                        // The accessed and dirty bits, as the VMM sets them.
                        let t = mark_used(&ram, cr3, va, write, t);
                        spaces
                            .fault(&ram, View::Kernel, va, t, walked.upper, write)
                            .map_err(|e| failed(&e))?;
                    }
                    _ if write && in_wedge(va) => {}
                    _ => outcome.reflected += 1,
                }
            }
            Record::UserFault { va, write } => {
                let view = current.ok_or(ReplayError::UserFaultOutsideUserMode { line })?;
                let space = View::User(view);
                if spaces
                    .vtlb(space)
                    .is_some_and(|v| v.mapper.allows(va, write))
                {
                    continue;
                }
                outcome.faults += 1;
                let walked = walk_keeping_upper(&ram, cr3, va);
                match (
                    walked.result,
                    user_fault(va, walked.result, write, &wedge_area),
                ) {
                    (Ok(t), UserFault::Map { writable }) => {
                        let t = mark_used(&ram, cr3, va, write, Translation { writable, ..t });
                        spaces
                            .fault(&ram, space, va, t, walked.upper, write)
                            .map_err(|e| failed(&e))?;
                    }
                    // The process's own #PF: its kernel runs next, and the
                    // page is mapped at the next entry if it then allows it.
                    _ => {
                        outcome.reflected += 1;
                        if let Some(views) = spaces.views.as_deref_mut() {
                            views.reflected_fault = Some((va, write));
                        }
                        current = None;
                    }
                }
            }
            Record::EnterUser => {
                current = Some(
                    spaces
                        .enter_user(&ram, cr3, &wedge_area)
                        .map_err(|e| failed(&e))?,
                );
            }
            Record::Cr3 { cr3: value } => {
                cr3 = value;
                spaces.cr3_load(&ram, value).map_err(|e| failed(&e))?;
            }
            Record::Invlpg { va } => {
                spaces.invlpg(&ram, cr3, va).map_err(|e| failed(&e))?;
            }
            // `Trace::parse` keeps neither.
            Record::Header { .. } | Record::End { .. } => {}
        }
        peak = peak.max(spaces.live());
    }
    let all = || core::iter::once(&*kernel).chain(views.vtlbs.iter());
    outcome.maps = all().map(|v| v.stats.maps).sum();
    outcome.unmaps = all().map(|v| v.removed).sum();
    outcome.peak_mappings = peak as u64;
    outcome.paging_objects = all().map(|v| v.mapper.structures() as u64).sum();
    outcome.violations = all().map(|v| v.stats.violations).sum();
    outcome.first_violation = all()
        .find_map(|v| v.stats.first_violation)
        .map(|v| v.to_string());
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;

    use crate::vtlb::tests::Tables;
    use proptest::prelude::*;

    const ROOT: u64 = 0x10_0000;
    const VA: u64 = 0x40_0000;

    /// Where the guest maps its last-level tables and its page directory,
    /// to write them.
    const ALIAS: u64 = 0x4000_0000;
    /// The third region's last-level table: filled as data and linked
    /// into the page directory only by [`Op::Link`], after the start.
    const LATE_TABLE: u64 = 0x30_0000;

    /// What the guest does that the VMM sees (or would, if it faults).
    #[derive(Clone, Copy, Debug)]
    enum Seen {
        Start,
        Touch {
            va: u64,
            write: bool,
        },
        /// The guest kernel enters user mode (the wedge's `EnterUser`).
        EnterUser,
        /// Its process touches `va`.
        UserTouch {
            va: u64,
            write: bool,
        },
        Invlpg {
            va: u64,
        },
        LoadCr3,
        End,
    }

    /// Runs the guest's `ops` on tables in fresh RAM, telling `vmm` each
    /// access and request. The guest writes its tables through mappings of
    /// their own (at [`ALIAS`]), as a kernel does. Its pages' upper levels
    /// give user mode access (each page's own entry decides), so its
    /// process may touch them: a process's touch enters user mode first if
    /// the kernel ran since, and a touch its tables do not allow user mode
    /// goes to its kernel (as a #PF), which leaves user mode.
    fn guest(ops: &[Op], vmm: &mut dyn FnMut(&crate::ram::Ram, Seen)) {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        for p in 0..8 {
            tables.set_user(page_of(p), 0, 0);
        }
        let mut in_user = false;
        let table_of = |ram: &crate::ram::Ram, va: u64| {
            walk_keeping_upper(ram, ROOT, va).upper & crate::walk::ADDR
        };
        let leaf = [
            table_of(&ram, VA),
            table_of(&ram, VA + (2 << 20)),
            LATE_TABLE,
        ];
        // The page directory above all three regions.
        let pml4e = ram.read_u64(ROOT).unwrap() & crate::walk::ADDR;
        let directory = ram.read_u64(pml4e).unwrap() & crate::walk::ADDR;
        for (k, &t) in (0u64..).zip(leaf.iter().chain([&directory])) {
            tables.set(ALIAS + k * 4096, t, 3);
        }
        vmm(&ram, Seen::Start);
        // The guest writes a table through its own mapping of it.
        let write =
            |vmm: &mut dyn FnMut(&crate::ram::Ram, Seen), alias: u64, gpa: u64, value: u64| {
                vmm(
                    &ram,
                    Seen::Touch {
                        va: ALIAS + alias * 4096,
                        write: true,
                    },
                );
                ram.write_u64(gpa, value).unwrap();
            };
        for op in ops {
            if !matches!(op, Op::UserTouch { .. }) {
                in_user = false;
            }
            match *op {
                Op::UserTouch { page, write } => {
                    if !in_user {
                        vmm(&ram, Seen::EnterUser);
                        in_user = true;
                    }
                    vmm(&ram, Seen::UserTouch { va: page, write });
                    let walked = crate::walk::walk(&ram, ROOT, page);
                    if !matches!(
                        user_fault(page, walked, write, &(0..0)),
                        UserFault::Map { writable } if writable || !write
                    ) {
                        in_user = false;
                    }
                }
                Op::Set { page, frame, flags } => {
                    let region = (page - VA) >> 21;
                    let at = leaf[region as usize] + ((page >> 12) & 0x1ff) * 8;
                    write(vmm, region, at, frame | flags);
                }
                Op::Link => {
                    let at = directory + ((VA + (4 << 20)) >> 21 & 0x1ff) * 8;
                    let linked = ram.read_u64(at).unwrap() != 0;
                    write(vmm, 3, at, if linked { 0 } else { LATE_TABLE | 7 });
                }
                Op::Touch { page, write } => vmm(&ram, Seen::Touch { va: page, write }),
                Op::Invlpg { page } => vmm(&ram, Seen::Invlpg { va: page }),
                Op::LoadCr3 => vmm(&ram, Seen::LoadCr3),
            }
        }
        vmm(&ram, Seen::End);
    }

    /// Page `p` of the guest's twelve: four in each of three 2 MiB regions.
    fn page_of(p: u64) -> u64 {
        VA + (p % 4) * 4096 + (p / 4) * (2 << 20)
    }

    /// Records the guest doing `ops` through the recorder, as the VMM
    /// would; returns the serial text.
    fn record(ops: &[Op]) -> String {
        let mut out = String::new();
        let mut rec = Box::new(Recorder::new());
        let mut vtlb = Vtlb::boxed(ModelSpace::default());
        let mut views = UserViews::<ModelSpace>::boxed();
        let mut current = 0;
        {
            let mut log = |a: fmt::Arguments| {
                out.push_str(&a.to_string());
                out.push('\n');
            };
            // The recorder's spaces, for one event.
            macro_rules! sp {
                () => {
                    Spaces {
                        kernel: &mut *vtlb,
                        views: Some(&mut *views),
                    }
                };
            }
            guest(ops, &mut |ram, seen| match seen {
                Seen::Start => rec.start(ram, &mut sp!(), ROOT, None, &mut log).unwrap(),
                Seen::Touch { va, write } => {
                    if !sp!().kernel.mapper.allows(va, write) {
                        rec.enter(ram, &mut sp!(), &mut log).unwrap();
                        rec.fault(ram, &mut sp!(), ROOT, va, write, View::Kernel, &mut log)
                            .unwrap();
                        let w = walk_keeping_upper(ram, ROOT, va);
                        if let Some(t) = w.result.ok().filter(|t| t.writable || !write) {
                            // As the VMM does, recording or not.
                            let t = mark_used(ram, ROOT, va, write, t);
                            rec.map(ram, &mut sp!(), View::Kernel, va, t, w.upper, write)
                                .unwrap();
                        }
                    }
                }
                Seen::EnterUser => {
                    rec.enter(ram, &mut sp!(), &mut log).unwrap();
                    current = rec
                        .enter_user(ram, &mut sp!(), ROOT, &mut log)
                        .unwrap()
                        .unwrap();
                }
                Seen::UserTouch { va, write } => {
                    let space = View::User(current);
                    let mut spaces = sp!();
                    if !spaces.vtlb(space).unwrap().mapper.allows(va, write) {
                        rec.enter(ram, &mut spaces, &mut log).unwrap();
                        rec.fault(ram, &mut spaces, ROOT, va, write, space, &mut log)
                            .unwrap();
                        let w = walk_keeping_upper(ram, ROOT, va);
                        if let (Ok(t), UserFault::Map { writable }) =
                            (w.result, user_fault(va, w.result, write, &(0..0)))
                        {
                            if writable || !write {
                                let t =
                                    mark_used(ram, ROOT, va, write, Translation { writable, ..t });
                                rec.map(ram, &mut spaces, space, va, t, w.upper, write)
                                    .unwrap();
                            }
                        }
                    }
                }
                Seen::Invlpg { va } => {
                    rec.enter(ram, &mut sp!(), &mut log).unwrap();
                    rec.invlpg(ram, &mut sp!(), ROOT, va, &mut log).unwrap();
                }
                Seen::LoadCr3 => {
                    rec.enter(ram, &mut sp!(), &mut log).unwrap();
                    rec.cr3_load(ram, &mut sp!(), ROOT, &mut log).unwrap();
                }
                Seen::End => rec.finish(ram, &mut sp!(), &mut log).unwrap(),
            });
        }
        out
    }
    #[derive(Clone, Debug)]
    enum Op {
        /// The guest sets page `page` to frame `frame` with `flags`.
        Set {
            page: u64,
            frame: u64,
            flags: u64,
        },
        /// The guest links the third region's table into its page
        /// directory, or unlinks it.
        Link,
        Touch {
            page: u64,
            write: bool,
        },
        /// The guest's process touches `page`.
        UserTouch {
            page: u64,
            write: bool,
        },
        Invlpg {
            page: u64,
        },
        LoadCr3,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Pages over three 2 MiB regions (three last-level tables, the
        // third linked late).
        let page = (0u64..12).prop_map(page_of);
        prop_oneof![
            (
                page.clone(),
                0u64..6,
                // Not present; read-only or writable, for the kernel only
                // or for user mode too.
                prop_oneof![Just(0u64), Just(1), Just(3), Just(5), Just(7)]
            )
                .prop_map(|(page, frame, flags)| Op::Set {
                    page,
                    frame: 0x20_0000 + frame * 4096,
                    flags
                }),
            Just(Op::Link),
            (page.clone(), any::<bool>()).prop_map(|(page, write)| Op::Touch { page, write }),
            (page.clone(), any::<bool>()).prop_map(|(page, write)| Op::UserTouch { page, write }),
            page.prop_map(|page| Op::Invlpg { page }),
            Just(Op::LoadCr3),
        ]
    }

    /// The same guest run directly under `strategy`, its process in the
    /// user views (faults counted as the VMM counts them, the peak after
    /// each event).
    fn direct(strategy: VtlbStrategy, ops: &[Op]) -> Outcome {
        let mut vtlb = Vtlb::boxed(ModelSpace::default());
        vtlb.clear(strategy, true, (0, 0));
        let mut views = UserViews::<ModelSpace>::boxed();
        views.clear(strategy, true, (0, 0));
        let (mut faults, mut peak, mut current) = (0, 0, 0);
        guest(ops, &mut |ram, seen| {
            let mut spaces = Spaces {
                kernel: &mut *vtlb,
                views: Some(&mut *views),
            };
            match seen {
                Seen::Touch { va, write } => {
                    if !spaces.kernel.mapper.allows(va, write) {
                        faults += 1;
                        let w = walk_keeping_upper(ram, ROOT, va);
                        if let Some(t) = w.result.ok().filter(|t| t.writable || !write) {
                            let t = mark_used(ram, ROOT, va, write, t);
                            spaces
                                .fault(ram, View::Kernel, va, t, w.upper, write)
                                .unwrap();
                        }
                    }
                }
                Seen::EnterUser => current = spaces.enter_user(ram, ROOT, &(0..0)).unwrap(),
                Seen::UserTouch { va, write } => {
                    let space = View::User(current);
                    if !spaces.vtlb(space).unwrap().mapper.allows(va, write) {
                        faults += 1;
                        let w = walk_keeping_upper(ram, ROOT, va);
                        match (w.result, user_fault(va, w.result, write, &(0..0))) {
                            (Ok(t), UserFault::Map { writable }) => {
                                let t =
                                    mark_used(ram, ROOT, va, write, Translation { writable, ..t });
                                spaces.fault(ram, space, va, t, w.upper, write).unwrap();
                            }
                            _ => {
                                spaces.views.as_deref_mut().unwrap().reflected_fault =
                                    Some((va, write));
                            }
                        }
                    }
                }
                Seen::Invlpg { va } => spaces.invlpg(ram, ROOT, va).unwrap(),
                Seen::LoadCr3 => spaces.cr3_load(ram, ROOT).unwrap(),
                Seen::Start | Seen::End => {}
            }
            peak = peak.max(spaces.live() as u64);
        });
        let all = || core::iter::once(&*vtlb).chain(views.vtlbs.iter());
        Outcome {
            faults,
            maps: all().map(|v| v.stats.maps).sum(),
            unmaps: all().map(|v| v.removed).sum(),
            peak_mappings: peak,
            violations: all().map(|v| v.stats.violations).sum(),
            ..Outcome::default()
        }
    }

    proptest! {
        /// Recorded once, the trace replays every strategy exactly as the
        /// guest run under that strategy: the same faults, mappings made
        /// and removed, peak and violations, in the kernel view and its
        /// process's user view alike.
        #[test]
        fn a_replay_agrees_with_the_direct_run_under_every_strategy(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let trace = Trace::parse(&record(&ops)).unwrap();
            for strategy in VtlbStrategy::ALL {
                let mut replayed = replay(&trace, strategy, true).unwrap();
                replayed.paging_objects = 0;
                replayed.reflected = 0;
                replayed.first_violation = None;
                prop_assert_eq!(replayed, direct(strategy, &ops), "{:?}", strategy);
            }
        }

        /// A trace cut anywhere, or with any byte changed, is refused or
        /// replays; it never panics, and a cut one is never accepted.
        #[test]
        fn a_damaged_trace_never_panics_and_a_cut_one_is_refused(
            ops in proptest::collection::vec(op(), 1..20),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let text = record(&ops);
            let cut = at.index(text.len());
            // Cut anywhere before the end record's last digit (whole lines
            // or not), a trace has no valid end.
            if cut < text.trim_end_matches('\n').len() {
                prop_assert!(Trace::parse(&text[..cut]).is_err());
            }
            let mut bytes = text.into_bytes();
            bytes[cut] = byte;
            if let Ok(damaged) = String::from_utf8(bytes) {
                if let Ok(trace) = Trace::parse(&damaged) {
                    let _ = replay(&trace, VtlbStrategy::Keep, true);
                }
            }
        }
    }

    #[test]
    fn the_broken_strategy_is_caught_in_replay() {
        let ops = [
            Op::Set {
                page: VA,
                frame: 0x20_0000,
                flags: 3,
            },
            Op::Touch {
                page: VA,
                write: false,
            },
            Op::Set {
                page: VA,
                frame: 0x20_1000,
                flags: 3,
            },
            Op::LoadCr3,
        ];
        let trace = Trace::parse(&record(&ops)).unwrap();
        assert_eq!(
            replay(&trace, VtlbStrategy::BrokenKeepAll, true)
                .unwrap()
                .violations,
            1
        );
        assert_eq!(
            replay(&trace, VtlbStrategy::Keep, true).unwrap().violations,
            0
        );
    }

    #[test]
    fn bad_traces_are_refused_with_the_reason() {
        let good = record(&[Op::LoadCr3]);
        assert!(Trace::parse(&good).is_ok());
        assert_eq!(Trace::parse("no trace here\n"), Err(ReplayError::NoTrace));
        let without_end: String = good
            .lines()
            .filter(|l| !l.contains(": E "))
            .map(|l| std::format!("{l}\n"))
            .collect();
        assert!(matches!(
            Trace::parse(&without_end),
            Err(ReplayError::Truncated { .. })
        ));
        let version = good.replacen("H 2 ", "H 3 ", 1);
        assert_eq!(Trace::parse(&version), Err(ReplayError::Version(3)));
        let altered = good.replacen(": C 100000", ": C 100001", 1);
        assert!(matches!(
            Trace::parse(&altered),
            Err(ReplayError::Corrupt { .. })
        ));
        let twice = std::format!("{good}{good}");
        assert!(matches!(
            Trace::parse(&twice),
            Err(ReplayError::AfterEnd { .. })
        ));
        let headless: String = good
            .lines()
            .skip(1)
            .map(|l| std::format!("{l}\n"))
            .collect();
        assert!(matches!(
            Trace::parse(&headless),
            Err(ReplayError::Header { line: 1 })
        ));
    }
}
