//! The root task's entry: the kernel starts the initial thread with the boot
//! info address in rdi and no stack.

/// Declares `_start` for a root task: it switches to a static stack of
/// `$stack_size` bytes, opens the console on COM1 and calls
/// `$main(bootinfo: &'static BootInfo) -> !`.
#[macro_export]
macro_rules! root_task {
    ($main:path, $stack_size:expr) => {
        #[repr(C, align(16))]
        struct RootStack([u8; $stack_size]);

        static mut ROOT_STACK: RootStack = RootStack([0; $stack_size]);

        core::arch::global_asm!(
            ".section .text._start, \"ax\"",
            ".global _start",
            "_start:",
            "lea rsp, [rip + {stack} + {size}]",
            "and rsp, -16",
            "call {entry}",
            "ud2",
            stack = sym ROOT_STACK,
            size = const $stack_size,
            entry = sym root_task_entry,
        );

        extern "C" fn root_task_entry(bootinfo: *const $crate::BootInfo) -> ! {
            // SAFETY: the kernel maps the boot info frame into the root task
            // and passes its address in rdi; it stays mapped for ever.
            let bootinfo: &'static $crate::BootInfo = unsafe { &*bootinfo };
            // The root task holds every I/O port: its console is COM1. If
            // no UART answers there, the task runs silent.
            let _ = $crate::debug::init($crate::init::IO_PORTS, $crate::debug::COM1_BASE);
            $main(bootinfo)
        }
    };
}
