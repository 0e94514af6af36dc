//! The one guest the VMM's two threads share: the main thread serves its
//! messages, the interrupt thread serves a timer tick itself while the main
//! thread waits (docs/vmm-server.md, "Interrupts"). All the `unsafe` of that
//! sharing is here.
//!
//! Why it holds: the machine has one CPU, and the interrupt thread runs one
//! priority level above the main thread. The main thread touches the guest
//! only between its waits ([`SharedGuest::serve`] hands out a `&mut ServedGuest`
//! for one message at a time); it marks each wait ([`SharedGuest::wait`]).
//! The interrupt thread touches the guest only when it finds the main thread
//! marked waiting — then the main thread is blocked in (or just entering, or
//! just back from) a system call, holding no reference, and it cannot run
//! again until the interrupt thread blocks, since the interrupt thread has
//! the higher priority and the only CPU.

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use vmm_core::guest::Guest;

use crate::platform::Sel4Platform;

/// The guest as the VMM's threads share it.
pub type ServedGuest = Guest<'static, Sel4Platform>;

/// The guest being served, and whether the main thread is waiting.
pub struct SharedGuest {
    guest: AtomicPtr<ServedGuest>,
    main_waiting: AtomicBool,
}

/// The VMM's one shared guest.
pub static SHARED: SharedGuest = SharedGuest {
    guest: AtomicPtr::new(core::ptr::null_mut()),
    main_waiting: AtomicBool::new(false),
};

impl SharedGuest {
    /// The main thread: publishes `guest` for the interrupt thread, then
    /// runs `step` on it once per message until `step` says it is done
    /// (`Some`), and withdraws it. `first` is the first wait.
    pub fn serve<T>(
        &self,
        guest: &mut Guest<'_, Sel4Platform>,
        first: impl FnOnce() -> previrt_sel4::Message,
        mut step: impl FnMut(
            &mut Guest<'_, Sel4Platform>,
            previrt_sel4::Message,
        ) -> Result<previrt_sel4::Message, T>,
    ) -> T {
        let ptr: *mut Guest<'_, Sel4Platform> = guest;
        self.guest.store(ptr.cast(), Ordering::Release);
        let mut message = self.wait(first);
        let out = loop {
            // SAFETY: `ptr` comes from the `&mut Guest` this call borrows for
            // its whole length, so it is live; the interrupt thread uses it
            // only while this thread is marked waiting, and `step` runs
            // between waits (module docs): this is the only live reference.
            let g = unsafe { &mut *ptr };
            match step(g, message) {
                Ok(next) => message = next,
                Err(done) => break done,
            }
        };
        self.guest.store(core::ptr::null_mut(), Ordering::Release);
        out
    }

    /// The main thread: runs its waiting system call `wait`, marked as
    /// waiting (the guest may be served by the interrupt thread meanwhile).
    pub fn wait(&self, wait: impl FnOnce() -> previrt_sel4::Message) -> previrt_sel4::Message {
        self.main_waiting.store(true, Ordering::Release);
        let message = wait();
        self.main_waiting.store(false, Ordering::Release);
        message
    }

    /// The interrupt thread: runs `f` on the guest if one is being served
    /// and the main thread is waiting; `None` otherwise (the main thread
    /// must be woken to do it).
    pub fn while_main_waits<R>(&self, f: impl FnOnce(&mut ServedGuest) -> R) -> Option<R> {
        let guest = self.guest.load(Ordering::Acquire);
        if guest.is_null() || !self.main_waiting.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: published by `serve` from a live `&mut Guest`, withdrawn
        // before that borrow ends; the main thread is waiting, holds no
        // reference, and cannot run until this thread blocks (module docs).
        Some(f(unsafe { &mut *guest }))
    }
}
