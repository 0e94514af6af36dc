//! A task from an ELF image: its TCB, CSpace, VSpace with the image, IPC
//! buffer and stack, as previrt lays every task out.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{cap, cspace_cap, small_frame, Array, BuildError, Builder, ObjectId, VSpace};
use crate::elf::Elf;
use crate::model::{Cap, ObjectKind, Rights, Slot, Tcb};
use crate::objects::{MAX_INIT_ARGS, PAGE_BITS};
use crate::spec::Fill;

const PAGE: u64 = 1 << PAGE_BITS;
const RW: Rights = Rights(Rights::READ.0 | Rights::WRITE.0);

/// A stack of `pages` 4 KiB pages from `bottom` up; the thread starts with
/// `sp` at its top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stack {
    /// Its lowest address (page-aligned).
    pub bottom: u64,
    /// How many pages.
    pub pages: u32,
}

/// What [`Builder::task`] makes a task from.
#[derive(Clone, Debug)]
pub struct Task<'a> {
    /// Prefix of its objects' names: `NAME_tcb`, `NAME_cnode`,
    /// `NAME_pml4` (and the paging structures), `NAME_ipc`,
    /// `NAME_stack[]`, `NAME_image@0xADDR`.
    pub name: &'a str,
    /// The image's name: the TCB's `elf:` and the file its frames are
    /// filled from (a bundle entry).
    pub image: &'a str,
    /// The image, read with [`crate::elf::read`].
    pub elf: &'a Elf,
    /// Where the image's segments may be (their pages, rounded out).
    pub image_region: Range<u64>,
    /// Where its IPC buffer page is mapped.
    pub ipc_buffer: u64,
    /// Its stack, if the spec gives one (else `sp` is 0 and the image
    /// brings its own).
    pub stack: Option<Stack>,
    /// The radix of its CNode.
    pub cnode_bits: u8,
    /// Priority.
    pub prio: u8,
    /// Maximum controlled priority.
    pub max_prio: u8,
    /// Its fault endpoint, a slot of its own CSpace.
    pub fault_ep: Option<u64>,
    /// Its start registers (rdi, rsi, ...), at most six.
    pub init: &'a [u64],
}

/// The objects [`Builder::task`] made. Put caps in the CNode, map more
/// pages into the VSpace, then [`VSpace::finish`] it.
#[derive(Debug)]
pub struct TaskObjects {
    /// Its thread.
    pub tcb: ObjectId,
    /// Its CSpace root.
    pub cnode: ObjectId,
    /// The cap its TCB's `cspace` holds (a guard that makes 64-bit cap
    /// pointers resolve), for a copy in its own CNode or another thread.
    pub cspace: Cap,
    /// Its IPC buffer frame.
    pub ipc: ObjectId,
    /// Its stack frames, if it has a stack.
    pub stack: Option<Array>,
    /// Its address space, with the image, IPC buffer and stack mapped.
    pub vspace: VSpace,
    /// Its image's name (its threads' `elf:`).
    pub image: String,
}

/// An image's pages: page address → (fills, rights: `R`, `W` if writable,
/// `X` if executable). Two segments may share a page (a linker that does
/// not page-align them): the page then gets both segments' bytes and the
/// union of their rights. The part of a page no file byte covers stays
/// zero (seL4 zeroes retyped frames), which is also what `.bss` needs.
fn image_pages(elf: &Elf, file: &str) -> BTreeMap<u64, (Vec<Fill>, Rights)> {
    let mut pages: BTreeMap<u64, (Vec<Fill>, Rights)> = BTreeMap::new();
    for s in &elf.segments {
        let mut rights = Rights::READ;
        if s.writable {
            rights = rights.union(Rights::WRITE);
        }
        if s.executable {
            rights = rights.union(Rights::EXECUTE);
        }
        // `elf::read` checked that no range wraps.
        let file_end = s.vaddr + s.filesz;
        let mut page = s.vaddr & !(PAGE - 1);
        while page < s.vaddr + s.memsz {
            let entry = pages.entry(page).or_insert((Vec::new(), Rights::NONE));
            entry.1 = entry.1.union(rights);
            let from = page.max(s.vaddr);
            let to = (page + PAGE).min(file_end);
            if from < to {
                entry.0.push(Fill {
                    dest_offset: from - page,
                    length: to - from,
                    file: file.to_string(),
                    file_offset: s.offset + (from - s.vaddr),
                });
            }
            page += PAGE;
        }
    }
    pages
}

/// A thread of a task: what [`Builder::thread`] makes a second thread in a
/// task's CSpace and VSpace from.
#[derive(Clone, Debug)]
pub struct Thread<'a> {
    /// Prefix of its objects' names: `NAME_tcb`, `NAME_ipc`,
    /// `NAME_stack[]`.
    pub name: &'a str,
    /// Where it starts.
    pub ip: u64,
    /// Where its IPC buffer page is mapped.
    pub ipc_buffer: u64,
    /// Its stack, if the spec gives one (else `sp` is 0).
    pub stack: Option<Stack>,
    /// Priority.
    pub prio: u8,
    /// Maximum controlled priority.
    pub max_prio: u8,
    /// Its fault endpoint, a slot of the task's CSpace.
    pub fault_ep: Option<u64>,
    /// Its start registers (rdi, rsi, ...), at most six.
    pub init: &'a [u64],
}

/// The objects of one thread.
#[derive(Debug)]
pub struct ThreadObjects {
    /// Its TCB.
    pub tcb: ObjectId,
    /// Its IPC buffer frame.
    pub ipc: ObjectId,
    /// Its stack frames, if it has a stack.
    pub stack: Option<Array>,
}

impl Builder {
    /// Declares `NAME_tcb` for `thread`, running `image`.
    fn thread_tcb(&mut self, thread: &Thread, image: &str) -> Result<ObjectId, BuildError> {
        let bad = |why: String| BuildError::BadThread {
            thread: thread.name.to_string(),
            why,
        };
        if thread.init.len() > MAX_INIT_ARGS {
            return Err(bad(format!(
                "{} start registers: at most {MAX_INIT_ARGS}",
                thread.init.len()
            )));
        }
        if thread.prio > thread.max_prio {
            return Err(bad(format!(
                "priority {} is above its maximum {}",
                thread.prio, thread.max_prio
            )));
        }
        let sp = thread
            .stack
            .map_or(0, |s| s.bottom.saturating_add(u64::from(s.pages) * PAGE));
        let tcb = self.object(
            &format!("{}_tcb", thread.name),
            ObjectKind::Tcb(Tcb {
                ipc_buffer_addr: thread.ipc_buffer,
                ip: thread.ip,
                sp,
                prio: thread.prio,
                max_prio: thread.max_prio,
                affinity: 0,
                fault_ep: thread.fault_ep,
                init: thread.init.iter().copied().collect(),
            }),
        )?;
        self.set_elf(tcb, image)?;
        Ok(tcb)
    }

    /// Declares `thread`'s IPC buffer and stack, maps them `RW` into
    /// `vspace`, and gives `tcb` its `cspace`, `vspace` and
    /// `ipc_buffer_slot`.
    fn thread_memory(
        &mut self,
        thread: &Thread,
        tcb: ObjectId,
        cspace: Cap,
        vspace: &mut VSpace,
    ) -> Result<ThreadObjects, BuildError> {
        let name = thread.name;
        let ipc = self.object(&format!("{name}_ipc"), small_frame())?;
        vspace.map(thread.ipc_buffer, ipc, RW)?;
        let stack = match thread.stack {
            Some(s) => {
                let frames = self.array(&format!("{name}_stack"), s.pages, small_frame())?;
                for (k, frame) in frames.iter().enumerate() {
                    vspace.map(s.bottom + k as u64 * PAGE, frame, RW)?;
                }
                Some(frames)
            }
            None => None,
        };
        self.cap(tcb, Slot::CSpace, cspace)?;
        self.cap(tcb, Slot::VSpace, cap(vspace.pml4(), Rights::NONE))?;
        self.cap(tcb, Slot::IpcBuffer, cap(ipc, RW))?;
        Ok(ThreadObjects { tcb, ipc, stack })
    }

    /// Declares a task running `task.elf`: its TCB (`ip` the entry point,
    /// `sp` the stack's top or 0, the IPC buffer's address), its CNode, its
    /// VSpace with one frame per page of the image's `PT_LOAD` segments
    /// (filled from the image), the IPC buffer (`RW`) and the stack (`RW`),
    /// and the TCB's `cspace`, `vspace` and `ipc_buffer_slot`.
    ///
    /// A call that fails declares nothing.
    pub fn task(&mut self, task: &Task) -> Result<TaskObjects, BuildError> {
        let before = self.objects.len();
        let made = self.task_objects(task);
        if made.is_err() {
            self.forget_since(before);
        }
        made
    }

    fn task_objects(&mut self, task: &Task) -> Result<TaskObjects, BuildError> {
        let region = &task.image_region;
        for s in &task.elf.segments {
            let start = s.vaddr & !(PAGE - 1);
            let end = (s.vaddr + s.memsz).checked_next_multiple_of(PAGE);
            if start < region.start || end.is_none_or(|end| end > region.end) {
                return Err(BuildError::SegmentOutside {
                    task: task.name.to_string(),
                    image: task.image.to_string(),
                    index: s.index,
                    start: s.vaddr,
                    end: s.vaddr + s.memsz,
                    first: region.start,
                    limit: region.end,
                });
            }
        }
        let name = task.name;
        let main = Thread {
            name,
            ip: task.elf.entry,
            ipc_buffer: task.ipc_buffer,
            stack: task.stack,
            prio: task.prio,
            max_prio: task.max_prio,
            fault_ep: task.fault_ep,
            init: task.init,
        };
        let tcb = self.thread_tcb(&main, task.image)?;
        let cnode = self.object(
            &format!("{name}_cnode"),
            ObjectKind::CNode {
                size_bits: task.cnode_bits,
            },
        )?;
        let cspace = cspace_cap(cnode, task.cnode_bits);
        let mut vspace = VSpace::new(self, name)?;
        let ThreadObjects { ipc, stack, .. } =
            self.thread_memory(&main, tcb, cspace, &mut vspace)?;
        for (page, (fills, rights)) in image_pages(task.elf, task.image) {
            let frame = self.object(&format!("{name}_image@{page:#x}"), small_frame())?;
            for fill in fills {
                self.fill(frame, fill)?;
            }
            vspace.map(page, frame, rights)?;
        }
        Ok(TaskObjects {
            tcb,
            cnode,
            cspace,
            ipc,
            stack,
            vspace,
            image: task.image.to_string(),
        })
    }

    /// Declares another thread of `task`: same image, CSpace and VSpace,
    /// its own TCB, IPC buffer and stack (mapped into the task's VSpace).
    /// A call that fails declares and maps nothing.
    pub fn thread(
        &mut self,
        task: &mut TaskObjects,
        thread: &Thread,
    ) -> Result<ThreadObjects, BuildError> {
        let before = self.objects.len();
        let mut vspace = task.vspace.clone();
        let made = self
            .thread_tcb(thread, &task.image)
            .and_then(|tcb| self.thread_memory(thread, tcb, task.cspace, &mut vspace));
        match made {
            Ok(objects) => {
                task.vspace = vspace;
                Ok(objects)
            }
            Err(e) => {
                self.forget_since(before);
                Err(e)
            }
        }
    }
}
