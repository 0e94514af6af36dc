//! Threads: configured from the spec (CSpace, VSpace, IPC buffer, priority,
//! fault endpoint, registers), and started only once everything is in place.

use capdl::model::{ObjectKind, Slot as SpecSlot, SpecReader};
use previrt_sel4::cap::guard_data;
use previrt_sel4::tcb::TcbConfig;
use previrt_sel4::{CNode, Page, Priority, Tcb, UserContext, VSpace, Word};

use crate::create::Table;
use crate::error::{Doing, LoadError};
use crate::slots::Slots;

pub fn configure_all(
    spec: &SpecReader<'static>,
    t: &Table,
    slots: &Slots,
) -> Result<u32, LoadError> {
    let mut count = 0;
    for (i, object) in spec.objects().enumerate() {
        let ObjectKind::Tcb(tcb) = &object.kind else {
            continue;
        };
        let i = i as u32;
        let name = t.names[i as usize];
        let (mut cspace, mut vspace, mut buffer) = (None, None, None);
        for record in spec.caps().filter(|r| r.holder == i) {
            match record.slot {
                SpecSlot::CSpace => cspace = Some(record.cap),
                SpecSlot::VSpace => vspace = Some(record.cap),
                SpecSlot::IpcBuffer => buffer = Some(record.cap),
                SpecSlot::Index(_) => {}
            }
        }
        let cspace = cspace.ok_or(LoadError::Unsupported {
            object: name,
            what: "a thread without a CSpace",
        })?;
        let vspace = vspace.ok_or(LoadError::Unsupported {
            object: name,
            what: "a thread without a VSpace",
        })?;
        let cspace_data = if cspace.guard_size > 0 {
            guard_data(cspace.guard, cspace.guard_size)
                .doing("encoding the CSpace guard of", name)?
        } else {
            0
        };
        Tcb(slots.object(i))
            .configure(TcbConfig {
                fault_endpoint: tcb.fault_ep.unwrap_or(0),
                priority: Priority {
                    prio: tcb.prio,
                    mcp: tcb.max_prio,
                },
                cspace: CNode(slots.object(cspace.target)),
                cspace_data,
                vspace: VSpace(slots.object(vspace.target)),
                ipc_buffer_addr: if buffer.is_some() {
                    tcb.ipc_buffer_addr
                } else {
                    0
                },
                ipc_buffer_frame: Page(buffer.map_or(0, |b| slots.object(b.target))),
            })
            .doing("configuring", name)?;
        let arg = |n: usize| tcb.init.get(n).copied().unwrap_or(0);
        let regs = UserContext {
            rip: tcb.ip,
            rsp: tcb.sp,
            rflags: 0x202,
            rdi: arg(0),
            rsi: arg(1),
            rdx: arg(2),
            rcx: arg(3),
            r8: arg(4),
            r9: arg(5),
            ..UserContext::default()
        };
        Tcb(slots.object(i))
            .write_registers(false, &regs)
            .doing("setting the registers of", name)?;
        count += 1;
    }
    Ok(count)
}

/// Resumes every thread that has an entry point. A thread without one
/// (`ip` 0, such as a guest, whose VMM sets its registers) is left for the
/// holder of its TCB capability to start.
pub fn start_all(spec: &SpecReader<'static>, t: &Table, slots: &Slots) -> Result<u32, LoadError> {
    let mut started = 0;
    for (i, object) in spec.objects().enumerate() {
        if let ObjectKind::Tcb(tcb) = &object.kind {
            if tcb.ip != 0 {
                Tcb(slots.object(i as u32))
                    .resume()
                    .doing("starting", t.names[i])?;
                started += 1;
            }
        }
    }
    Ok(started)
}

/// Seconds are not known here; the summary reports TSC ticks.
pub type Ticks = Word;
