/*
 * previrt's seL4 5.0.0 kernel configuration: x86_64, pc99, a debug build with
 * printing, for QEMU under TCG. It replaces include/plat/pc99/autoconf.h of the
 * kernel source (an old verification config with x2APIC, PCID, an IOMMU and
 * 1 GiB pages, none of which QEMU 7.2 TCG offers).
 *
 * The Rust bindings (sel4/sys) read this same file to decide which
 * conditional parts of the kernel's interface exist, so the numbers they
 * generate are the numbers this kernel uses.
 */
#ifndef PREVIRT_SEL4_AUTOCONF_H
#define PREVIRT_SEL4_AUTOCONF_H
#define AUTOCONF_INCLUDED

/* Architecture and platform */
#define CONFIG_ARCH_X86 1
#define CONFIG_ARCH_X86_64 1
#define CONFIG_PLAT_PC99 1
#define CONFIG_WORD_SIZE 64
#define CONFIG_KERNEL_MASTER 1
#define CONFIG_MAX_NUM_NODES 1
#define CONFIG_CACHE_LN_SZ 64
#define CONFIG_KERNEL_STACK_BITS 12

/* Capability space and scheduling. A 2^16-slot root CNode: the CapDL
 * loader holds a capability to every object of a system (a guest with 64 MiB
 * of RAM alone is 16384 frames) before handing them out. */
#define CONFIG_ROOT_CNODE_SIZE_BITS 16
#define CONFIG_TIMER_TICK_MS 2
#define CONFIG_TIME_SLICE 5
#define CONFIG_NUM_DOMAINS 1
#define CONFIG_NUM_PRIORITIES 256
#define CONFIG_RETYPE_FAN_OUT_LIMIT 256
#define CONFIG_MAX_NUM_WORK_UNITS_PER_PREEMPTION 100
#define CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS 166
#define CONFIG_FASTPATH 1

/* Debugging: seL4_DebugPutChar and friends, kernel printing, fault reports */
#define CONFIG_DEBUG_BUILD 1
#define CONFIG_PRINTING 1
#define CONFIG_IRQ_REPORTING 1
/* The standalone Makefile also defines this on the command line. */
#ifndef CONFIG_USER_STACK_TRACE_LENGTH
#define CONFIG_USER_STACK_TRACE_LENGTH 16
#endif
#define CONFIG_OPTIMISATION_O2 1
#define CONFIG_NO_BENCHMARKS 1

/* Interrupts: IOAPIC + xAPIC (QEMU 7.2 TCG has no x2APIC) */
#define CONFIG_IRQ_IOAPIC 1
#define CONFIG_MAX_NUM_IOAPIC 1
#define CONFIG_XAPIC 1

/* CPU features: syscall instruction, FPU state, FS/GS base instructions
 * (QEMU needs `-cpu qemu64,+fsgsbase`) */
#define CONFIG_SYSCALL 1
#define CONFIG_HAVE_FPU 1
#define CONFIG_FXSAVE 1
#define CONFIG_XSAVE_SIZE 512
#define CONFIG_FPU_MAX_RESTORES_SINCE_SWITCH 64
#define CONFIG_FSGSBASE_INST 1
#define CONFIG_MULTIBOOT_GRAPHICS_MODE_NONE 1

/* Deliberately off: CONFIG_IOMMU, CONFIG_VTX, CONFIG_HUGE_PAGE,
 * CONFIG_SUPPORT_PCID, CONFIG_X2APIC. */

#endif
