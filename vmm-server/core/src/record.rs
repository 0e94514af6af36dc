//! Recording a guest's page-table trace, for replay on the host under any
//! vTLB strategy ([`crate::replay`]; docs/vtlb.md, "Record and replay").
//!
//! A strategy sees the guest's accesses only as faults, so the recorder
//! must fault wherever *any* strategy could, and log what every
//! strategy's decisions read: the guest's page tables. It
//!
//! - keeps at most [`SET`] pages mapped, and maps none ahead of a fault:
//!   between two invalidation points, an access that does not fault here
//!   touches a page faulted here since the last one, with the same access
//!   or a weaker one — which every strategy has mapped too, as strategies
//!   unmap only at invalidation points, at trapped table writes and when
//!   write-protecting a table (both mirrored below);
//! - maps a page read-only unless the access wrote it, so a first write
//!   after a read faults here as it may under a strategy;
//! - logs every page table when it first becomes known (every table
//!   reachable at a CR3 load, every table on a fault's or an invlpg's
//!   walk): its non-zero words, before the event that reached it (the
//!   replay reads them there);
//! - keeps every known table read-only: a write to one faults, drops the
//!   mappings made from the table (as the write-protect strategy does),
//!   and maps the page writable until the VMM is next entered, when the
//!   words the guest changed are logged (against a copy taken at the
//!   fault) and the page goes again;
//! - logs every VM fault, CR3 load and invlpg, in order.
//!
//! No strategy is entered between two of the recorder's entries, so the
//! table words logged at an entry are what every strategy would read.

use core::fmt;

use crate::ram::Ram;
use crate::spaces::Spaces;
use crate::trace::{Checksum, Line, Record, VERSION};
use crate::views::View;
use crate::vtlb::{MapError, Mapper};
use crate::walk::{Translation, ADDR};

/// Guest frames the recorder can know as page tables (1 GiB of RAM).
pub const FRAMES: usize = 1 << 18;

/// The most pages the recorder keeps mapped; past it, it unmaps them all
/// (one instruction touches far fewer, so it always completes).
pub const SET: usize = 16;

const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;

/// Why the recorder cannot go on faithfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A page table at this guest-physical address lies beyond the frames
    /// the recorder tracks ([`FRAMES`]).
    Untracked(u64),
}

/// A page table the guest may be writing: made writable at a write fault,
/// until the VMM is next entered.
#[derive(Clone, Copy, Debug)]
struct Open {
    table: u64,
    page: u64,
}

/// The recorder's state for one guest: which frames are page tables, and
/// the trace's running count and checksum.
pub struct Recorder {
    known: [u64; FRAMES / 64],
    /// Tables visited by the current CR3 load's walk.
    visited: [u64; FRAMES / 64],
    open: Option<Open>,
    /// The open table's words at its write fault.
    copy: [u64; 512],
    /// Records written, and their checksum.
    pub records: u64,
    checksum: Checksum,
    /// The first reason the trace is not faithful, if any (said in the
    /// trace's end by a wrong count: the host refuses it).
    pub error: Option<RecordError>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("records", &self.records)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// Where the trace's lines go (the VMM's log).
pub type Log<'a> = &'a mut dyn FnMut(fmt::Arguments);

impl Recorder {
    pub const fn new() -> Recorder {
        Recorder {
            known: [0; FRAMES / 64],
            visited: [0; FRAMES / 64],
            open: None,
            copy: [0; 512],
            records: 0,
            checksum: Checksum(0xcbf2_9ce4_8422_2325),
            error: None,
        }
    }

    fn emit(&mut self, log: Log, record: Record) {
        let line = Line::of(&record);
        self.checksum.add_line(line.as_str());
        self.records += 1;
        log(format_args!("{}{}", crate::trace::PREFIX, line.as_str()));
    }

    fn frame(&mut self, gpa: u64) -> Option<usize> {
        let frame = (gpa >> 12) as usize;
        if frame < FRAMES {
            Some(frame)
        } else {
            self.error.get_or_insert(RecordError::Untracked(gpa));
            None
        }
    }

    pub fn is_known(&self, gpa: u64) -> bool {
        let frame = (gpa >> 12) as usize;
        frame < FRAMES && self.known[frame / 64] & (1 << (frame % 64)) != 0
    }

    /// Starts the trace for a guest of `ram` whose tables are at `cr3`
    /// (the wedge's memory at `wedge`, if it has one).
    pub fn start<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        wedge: Option<u64>,
        log: Log,
    ) -> Result<(), M::Error> {
        self.known.fill(0);
        self.open = None;
        self.records = 0;
        self.checksum = Checksum::default();
        self.error = None;
        self.emit(
            log,
            Record::Header {
                version: VERSION,
                ram: ram.size(),
                cr3,
                wedge,
            },
        );
        self.learn_tree(ram, spaces, cr3, log)
    }

    /// The VMM is entered (any message of the guest's): the words of the
    /// table the guest may have written since are logged, and its page
    /// goes.
    pub fn enter<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        log: Log,
    ) -> Result<(), M::Error> {
        let Some(Open { table, page }) = self.open.take() else {
            return Ok(());
        };
        for i in 0..512u64 {
            let gpa = table + i * 8;
            let value = ram.read_u64(gpa).unwrap_or(0);
            if value != self.copy[i as usize] {
                self.emit(log, Record::Write { gpa, value });
            }
        }
        spaces.invalidate(page)
    }

    /// Logs table `gpa` if it is new; its mappings go (it is read-only
    /// from now on). Returns whether it was new.
    fn learn<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        gpa: u64,
        log: Log,
    ) -> Result<bool, M::Error> {
        let gpa = gpa & ADDR;
        let Some(frame) = self.frame(gpa) else {
            return Ok(false);
        };
        if self.known[frame / 64] & (1 << (frame % 64)) != 0 || !ram.contains(gpa, 4096) {
            return Ok(false);
        }
        self.known[frame / 64] |= 1 << (frame % 64);
        for i in 0..512u64 {
            let value = ram.read_u64(gpa + i * 8).unwrap_or(0);
            if value != 0 {
                self.emit(
                    log,
                    Record::Write {
                        gpa: gpa + i * 8,
                        value,
                    },
                );
            }
        }
        spaces.remove_frame(gpa)?;
        Ok(true)
    }

    /// Learns every table reachable from `cr3` (what a CR3 load's keep and
    /// check read).
    fn learn_tree<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        log: Log,
    ) -> Result<(), M::Error> {
        self.visited.fill(0);
        self.learn_below(ram, spaces, cr3 & ADDR, 4, log)
    }

    fn learn_below<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        table: u64,
        level: u32,
        log: Log,
    ) -> Result<(), M::Error> {
        let Some(frame) = self.frame(table) else {
            return Ok(());
        };
        if self.visited[frame / 64] & (1 << (frame % 64)) != 0 || !ram.contains(table, 4096) {
            return Ok(());
        }
        self.visited[frame / 64] |= 1 << (frame % 64);
        self.learn(ram, spaces, table, log)?;
        if level == 1 {
            return Ok(());
        }
        for i in 0..512u64 {
            let entry = ram.read_u64(table + i * 8).unwrap_or(0);
            if entry & PRESENT != 0 && (level == 4 || entry & LARGE == 0) {
                self.learn_below(ram, spaces, entry & ADDR, level - 1, log)?;
            }
        }
        Ok(())
    }

    /// Learns the tables on `va`'s walk from `cr3`; returns the last one
    /// reached.
    fn learn_path<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        va: u64,
        log: Log,
    ) -> Result<(), M::Error> {
        let mut table = cr3 & ADDR;
        for level in (1..=4u32).rev() {
            if !ram.contains(table, 4096) {
                break;
            }
            self.learn(ram, spaces, table, log)?;
            let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
            let entry = ram.read_u64(table + index * 8).unwrap_or(0);
            if level == 1 || entry & PRESENT == 0 || (level < 4 && entry & LARGE != 0) {
                break;
            }
            table = entry & ADDR;
        }
        Ok(())
    }

    /// A VM fault at `va` in `space`: the tables on its walk learned, then
    /// the fault logged (the replay walks there with what was learned).
    #[allow(clippy::too_many_arguments)]
    pub fn fault<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        va: u64,
        write: bool,
        space: View,
        log: Log,
    ) -> Result<(), M::Error> {
        self.learn_path(ram, spaces, cr3, va, log)?;
        let record = match space {
            View::Kernel => Record::Fault { va, write },
            View::User(_) => Record::UserFault { va, write },
        };
        self.emit(log, record);
        Ok(())
    }

    /// Entering user mode with CR3 `cr3`: every table it reaches learned
    /// (what a strategy's re-validation of the view and the mapping of the
    /// process's last #PF read), the entry logged, and the view of `cr3`
    /// emptied: every page the process touches until it leaves faults
    /// here at least once, as it may under any strategy. Returns the view.
    pub fn enter_user<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        log: Log,
    ) -> Result<Option<usize>, M::Error> {
        self.learn_tree(ram, spaces, cr3, log)?;
        self.emit(log, Record::EnterUser);
        let Some(views) = spaces.views.as_deref_mut() else {
            return Ok(None);
        };
        let (n, _) = views.select(cr3);
        // Not mapped ahead here: the replay maps it as the strategy would.
        views.reflected_fault = None;
        views.vtlbs[n].remove_all()?;
        Ok(Some(n))
    }

    /// Maps the page of a fault in `space` the guest's tables allow (`t`,
    /// from a walk with upper levels `upper`), as the recorder does (module
    /// doc).
    #[allow(clippy::too_many_arguments)]
    pub fn map<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        space: View,
        va: u64,
        t: Translation,
        upper: u64,
        write: bool,
    ) -> Result<(), MapError<M::Error>> {
        let page = va & !0xfff;
        // What write-protect takes away at a fault through a table: the
        // table's own mappings.
        if let Ok(crate::walk::Upper::Table { at, .. }) = crate::walk::Upper::unpack(upper) {
            if upper != 0 {
                spaces.remove_frame(at)?;
            }
        }
        let writable = if write && self.is_known(t.gpa) {
            // A write to a page table: what write-protect drops goes (in
            // every space, as it does), and the page is writable until the
            // next entry.
            spaces.remove_made_from(t.gpa)?;
            spaces.remove_frame(t.gpa)?;
            for (i, word) in self.copy.iter_mut().enumerate() {
                *word = ram.read_u64((t.gpa & ADDR) + i as u64 * 8).unwrap_or(0);
            }
            self.open = Some(Open {
                table: t.gpa & ADDR,
                page,
            });
            true
        } else {
            write && !self.is_known(t.gpa)
        };
        let Some(vtlb) = spaces.vtlb(space) else {
            return Err(MapError::Full);
        };
        if vtlb.count >= SET {
            vtlb.remove_all()?;
        }
        vtlb.map(page, Translation { writable, ..t }, upper)
    }

    /// A CR3 load: every table it reaches learned, then the load logged;
    /// every mapping goes.
    pub fn cr3_load<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        log: Log,
    ) -> Result<(), M::Error> {
        self.learn_tree(ram, spaces, cr3, log)?;
        self.emit(log, Record::Cr3 { cr3 });
        if let Some(views) = spaces.views.as_deref_mut() {
            views.cr3_loaded();
        }
        spaces.kernel.remove_all()
    }

    /// An invlpg of `va` with the tables at `cr3`: its walk's tables
    /// learned, then the invlpg logged; its page goes.
    pub fn invlpg<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        cr3: u64,
        va: u64,
        log: Log,
    ) -> Result<(), M::Error> {
        self.learn_path(ram, spaces, cr3, va, log)?;
        self.emit(log, Record::Invlpg { va });
        if let Some(view) = spaces.views.as_deref_mut().and_then(|v| v.holding(cr3)) {
            view.invalidate(va)?;
        }
        spaces.kernel.invalidate(va)
    }

    /// Ends the trace (the guest's run is over). A recorder that could not
    /// track a table says so by counting one record more than it wrote:
    /// the host refuses the trace.
    pub fn finish<M: Mapper>(
        &mut self,
        ram: &Ram,
        spaces: &mut Spaces<'_, M>,
        log: Log,
    ) -> Result<(), M::Error> {
        self.enter(ram, spaces, log)?;
        let records = self.records + u64::from(self.error.is_some());
        let checksum = self.checksum.0;
        self.emit(log, Record::End { records, checksum });
        Ok(())
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ram::host::HostRam;
    use crate::replay::ModelSpace;
    use crate::vtlb::tests::Tables;
    use crate::vtlb::Vtlb;
    use crate::walk::walk_keeping_upper;

    /// The kernel view alone (no processes).
    fn sp(vtlb: &mut Vtlb<ModelSpace>) -> Spaces<'_, ModelSpace> {
        Spaces {
            kernel: vtlb,
            views: None,
        }
    }
    use std::string::{String, ToString};
    use std::vec::Vec;

    const ROOT: u64 = 0x10_0000;
    const VA: u64 = 0x40_0000;

    /// A recorder, started (its lines in `out`), and its vTLB over tables
    /// mapping `VA` (frame 0x20_0000, writable) and the last-level table
    /// itself at `VA + 4096`; returns the table's address too.
    fn setup(ram: &Ram, out: &mut Vec<String>) -> (Box<Recorder>, Box<Vtlb<ModelSpace>>, u64) {
        let mut tables = Tables::new(ram, ROOT);
        tables.set(VA, 0x20_0000, 3);
        let table = walk_keeping_upper(ram, ROOT, VA).upper & ADDR;
        tables.set(VA + 4096, table, 3);
        let mut rec = Box::new(Recorder::new());
        let mut vtlb = Vtlb::boxed(ModelSpace::default());
        rec.start(ram, &mut sp(&mut vtlb), ROOT, None, &mut |a| {
            out.push(a.to_string())
        })
        .unwrap();
        (rec, vtlb, table)
    }

    /// Serves a fault at `va` as the VMM does while recording.
    fn fault(
        rec: &mut Recorder,
        ram: &Ram,
        vtlb: &mut Vtlb<ModelSpace>,
        va: u64,
        write: bool,
        out: &mut Vec<String>,
    ) {
        let log = &mut |a: fmt::Arguments<'_>| out.push(a.to_string());
        rec.enter(ram, &mut sp(vtlb), log).unwrap();
        rec.fault(ram, &mut sp(vtlb), ROOT, va, write, View::Kernel, log)
            .unwrap();
        let w = walk_keeping_upper(ram, ROOT, va);
        let t = w.result.unwrap();
        rec.map(ram, &mut sp(vtlb), View::Kernel, va, t, w.upper, write)
            .unwrap();
    }

    #[test]
    fn a_read_maps_read_only_and_a_write_writable() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut out = Vec::new();
        let (mut rec, mut vtlb, _) = setup(&ram, &mut out);
        fault(&mut rec, &ram, &mut vtlb, VA, false, &mut out);
        assert!(vtlb.mapper.allows(VA, false) && !vtlb.mapper.allows(VA, true));
        fault(&mut rec, &ram, &mut vtlb, VA, true, &mut out);
        assert!(vtlb.mapper.allows(VA, true));
        let faults: Vec<&String> = out.iter().filter(|l| l.contains(": F ")).collect();
        assert_eq!(faults, ["vtlb-trace: F 400000 0", "vtlb-trace: F 400000 1"]);
    }

    #[test]
    fn a_table_write_is_logged_at_the_next_entry_and_its_page_goes() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut out = Vec::new();
        let (mut rec, mut vtlb, table) = setup(&ram, &mut out);
        // The table is known: read through its own mapping, read-only.
        fault(&mut rec, &ram, &mut vtlb, VA, false, &mut out);
        fault(&mut rec, &ram, &mut vtlb, VA + 4096, false, &mut out);
        assert!(!vtlb.mapper.allows(VA + 4096, true));
        // A write to it: what was made from it goes, its page is writable.
        fault(&mut rec, &ram, &mut vtlb, VA + 4096, true, &mut out);
        assert!(vtlb.mapper.allows(VA + 4096, true));
        assert!(!vtlb.mapper.allows(VA, false));
        let before = out.len();
        // The guest remaps VA; at the next entry the word is logged and
        // the page is read-only (unmapped) again.
        ram.write_u64(table + ((VA >> 12) & 0x1ff) * 8, 0x20_1003)
            .unwrap();
        rec.enter(&ram, &mut sp(&mut vtlb), &mut |a| out.push(a.to_string()))
            .unwrap();
        assert_eq!(
            out[before..],
            [std::format!(
                "vtlb-trace: W {:x} 201003",
                table + ((VA >> 12) & 0x1ff) * 8
            )]
        );
        assert!(!vtlb.mapper.allows(VA + 4096, false));
        // The end counts every record and checks out on the host.
        rec.finish(&ram, &mut sp(&mut vtlb), &mut |a| out.push(a.to_string()))
            .unwrap();
        let text: String = out.iter().map(|l| std::format!("{l}\n")).collect();
        let trace = crate::replay::Trace::parse(&text).unwrap();
        assert_eq!(trace.faults(), 3);
    }

    #[test]
    fn past_its_set_the_recorder_unmaps_everything() {
        let host = HostRam::new(4 << 20);
        let ram = host.ram();
        let mut tables = Tables::new(&ram, ROOT);
        for i in 0..=SET as u64 {
            tables.set(VA + i * 4096, 0x20_0000 + i * 4096, 3);
        }
        let mut rec = Box::new(Recorder::new());
        let mut vtlb = Vtlb::boxed(ModelSpace::default());
        let mut out = Vec::new();
        rec.start(&ram, &mut sp(&mut vtlb), ROOT, None, &mut |a| {
            out.push(a.to_string())
        })
        .unwrap();
        for i in 0..SET as u64 {
            fault(&mut rec, &ram, &mut vtlb, VA + i * 4096, false, &mut out);
        }
        assert_eq!(vtlb.count, SET);
        fault(
            &mut rec,
            &ram,
            &mut vtlb,
            VA + SET as u64 * 4096,
            false,
            &mut out,
        );
        assert_eq!(vtlb.count, 1);
    }
}
