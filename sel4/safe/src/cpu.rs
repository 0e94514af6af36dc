//! Unprivileged CPU facilities.

/// The time-stamp counter. Under QEMU `-icount shift=0` it counts executed
/// instructions, which makes it previrt's deterministic measure of cost.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads a counter; it has no memory effects and is allowed
    // at user level (CR4.TSD is clear under seL4).
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `cpuid` for `leaf`/`subleaf`: `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: cpuid is unprivileged and only writes the four registers;
    // rbx is saved around it because Rust's asm may not name it.
    unsafe {
        core::arch::asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) b,
            inout("eax") leaf => a,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}
