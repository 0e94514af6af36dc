/*
 * previrt's seL4 5.0.0 kernel configuration: x86_64, pc99, a release build
 * (no CONFIG_DEBUG_BUILD, no CONFIG_PRINTING: no debug system calls exist,
 * so no thread can print on the kernel console or halt the kernel without
 * a capability), optimised (-O2), for QEMU under TCG. The debug kernel,
 * `--debug-kernel`, adds debug.h beside this file. It replaces include/plat/pc99/autoconf.h of the
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
#define CONFIG_ROOT_CNODE_SIZE_BITS 18
#define CONFIG_TIMER_TICK_MS 2
#define CONFIG_TIME_SLICE 5
#define CONFIG_NUM_DOMAINS 1
#define CONFIG_NUM_PRIORITIES 256
#define CONFIG_RETYPE_FAN_OUT_LIMIT 256
#define CONFIG_MAX_NUM_WORK_UNITS_PER_PREEMPTION 100
#define CONFIG_MAX_NUM_BOOTINFO_UNTYPED_CAPS 166
#define CONFIG_FASTPATH 1

/* Debugging is off here: see debug.h. */
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
