//! Threads of the root task: each gets a stack from a static pool, an IPC
//! buffer frame, and runs in the root task's CSpace and VSpace.

use core::sync::atomic::{AtomicUsize, Ordering};

use previrt_sel4::tcb::TcbConfig;
use previrt_sel4::{init, CPtr, CapRights, Error, Priority, Tcb, UserContext, Word};

use crate::objects::Objects;

pub const STACK_SIZE: usize = 16 * 1024;
const THREADS: usize = 4;
/// Where the threads' IPC buffers are mapped, one page each.
const IPC_BUFFERS: Word = 0x1000_0000;

#[repr(C, align(16))]
pub struct Stack([u8; STACK_SIZE]);

static mut STACKS: [Stack; THREADS] = [const { Stack([0; STACK_SIZE]) }; THREADS];
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A thread's entry: it gets one argument and never returns.
pub type Entry = extern "C" fn(Word) -> !;

/// Creates and starts a thread at `entry(arg)` with `priority`; its faults go
/// to `fault_endpoint` (a capability address in the root CSpace, 0: none).
pub fn spawn(
    objects: &mut Objects,
    entry: Entry,
    arg: Word,
    priority: u8,
    fault_endpoint: CPtr,
) -> Result<Tcb, Error> {
    let index = NEXT.fetch_add(1, Ordering::Relaxed);
    if index >= THREADS {
        return Err(Error::NotEnoughMemory);
    }
    let tcb = objects.tcb()?;
    let buffer = objects.frame()?;
    let buffer_addr = IPC_BUFFERS + (index as Word) * 0x1000;
    objects.map(buffer, buffer_addr, CapRights::READ_WRITE)?;
    tcb.configure(TcbConfig {
        fault_endpoint,
        priority: Priority {
            prio: priority,
            mcp: 0,
        },
        cspace: init::CNODE,
        cspace_data: 0,
        vspace: init::VSPACE,
        ipc_buffer_addr: buffer_addr,
        ipc_buffer_frame: buffer,
    })?;
    // SAFETY: each pool entry is handed out once (NEXT only grows), so this
    // thread is the only user of the stack; only its address is taken here.
    let stack_top = unsafe { (&raw mut STACKS[index]).add(1) } as Word;
    let regs = UserContext {
        rip: entry as *const () as Word,
        // As if `call` had pushed a return address: rsp = 8 (mod 16).
        rsp: stack_top - 8,
        rflags: 0x202,
        rdi: arg,
        ..UserContext::default()
    };
    tcb.write_registers(true, &regs)?;
    Ok(tcb)
}
