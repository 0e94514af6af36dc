//! wedge-l4's backend on seL4: every request is one `seL4_Call` on the
//! guest's only capability, its badged endpoint to the VMM server, with the
//! message laid out by `previrt-protocol`.

use core::sync::atomic::{AtomicU32, Ordering};

use previrt_protocol::{Reply, Request, Status, DEFERRED_EOI_OFFSET, STRING_BYTES, VCPU_PAGE};
use previrt_sel4::ipc;
use wedge_l4::backend::{Backend, BackendError, ShutdownReason};
use wedge_l4::vcpu::Vcpu;

/// The vCPU page's count of EOIs not passed on yet.
fn deferred_eoi() -> &'static AtomicU32 {
    // SAFETY: the VMM maps the vCPU page before the wedge starts; the
    // counter is an aligned u32 there that only the guest thread (this one)
    // and, while this thread is not running, the VMM touch.
    unsafe { &*((VCPU_PAGE + DEFERRED_EOI_OFFSET) as *const AtomicU32) }
}

/// The guest CSpace's one slot (capdl::generate::GUEST_ENDPOINT_SLOT).
const VMM: u64 = 1;

pub struct Sel4Backend;

impl Sel4Backend {
    pub fn request(&mut self, request: Request) -> Reply {
        let (label, mr) = request.encode();
        let reply = ipc::call(VMM, label as u64, &mr[..label.length()]);
        Reply::decode(reply.label(), reply.mr(0))
    }

    fn ok(&mut self, request: Request) -> Result<u64, BackendError> {
        let reply = self.request(request);
        match reply.status {
            Status::Ok => Ok(reply.value),
            Status::Refused => Err(BackendError::Refused),
            Status::Stopped | Status::Invalid => Err(BackendError::Stopped),
        }
    }
}

impl Backend for Sel4Backend {
    fn port_in(&mut self, port: u16, size: u8) -> Result<u32, BackendError> {
        self.ok(Request::PortIn { port, size }).map(|v| v as u32)
    }

    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Result<(), BackendError> {
        // A non-specific EOI to the master 8259, the hottest port write of
        // all (every timer interrupt ends with one): counted in the vCPU
        // page for the VMM to apply before its PIC's next decision.
        if (port, size, value) == (0x20, 1, 0x20) {
            deferred_eoi().fetch_add(1, Ordering::AcqRel);
            return Ok(());
        }
        self.ok(Request::PortOut { port, size, value }).map(drop)
    }

    fn port_out_string(&mut self, port: u16, size: u8, data: &[u8]) -> Result<(), BackendError> {
        let per = STRING_BYTES - STRING_BYTES % usize::from(size.max(1));
        for chunk in data.chunks(per) {
            let mut bytes = [0u8; STRING_BYTES];
            bytes[..chunk.len()].copy_from_slice(chunk);
            self.ok(Request::PortOutString {
                port,
                size,
                len: chunk.len() as u8,
                data: bytes,
            })?;
        }
        Ok(())
    }

    fn load_cr3(&mut self, value: u64) -> Result<(), BackendError> {
        self.ok(Request::LoadCr3 { value }).map(drop)
    }

    fn invlpg(&mut self, address: u64) -> Result<(), BackendError> {
        self.ok(Request::Invlpg { address }).map(drop)
    }

    fn write_cr0(&mut self, value: u64) -> Result<(), BackendError> {
        self.ok(Request::WriteCr0 { value }).map(drop)
    }

    fn write_cr4(&mut self, value: u64) -> Result<(), BackendError> {
        self.ok(Request::WriteCr4 { value }).map(drop)
    }

    fn halt(&mut self, _vcpu: &Vcpu) -> Result<(), BackendError> {
        self.ok(Request::Halt).map(drop)
    }

    fn set_fs_base(&mut self, base: u64) -> Result<(), BackendError> {
        self.ok(Request::SetFsBase { base }).map(drop)
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        previrt_sel4::cpu::cpuid(leaf, subleaf)
    }

    fn rdtsc(&mut self) -> u64 {
        previrt_sel4::cpu::rdtsc()
    }

    fn shutdown(&mut self, reason: ShutdownReason) {
        self.request(Request::Shutdown {
            reason: reason.code(),
        });
    }
}
