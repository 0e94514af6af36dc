/*
 * The debug kernel (`cargo xtask run --debug-kernel`): these lines go in
 * front of autoconf.h, and the kernel's Makefile runs with DEBUG=1.
 *
 * What it exposes: every thread, with no capability at all, gets seL4's
 * debug system calls — DebugPutChar (-9) writes any byte on the kernel
 * console (COM1, where the loader and the VMM print too, so a guest can
 * forge their lines), DebugHalt (-10) stops the whole machine,
 * DebugCapIdentify (-11), DebugSnapshot (-12) and DebugNameThread (-13)
 * inspect or name kernel objects. The kernel also prints its boot log and
 * a line for every fault it delivers. For development only.
 */
#define CONFIG_DEBUG_BUILD 1
#define CONFIG_PRINTING 1
#define CONFIG_IRQ_REPORTING 1
/* The standalone Makefile also defines this on the command line. */
#ifndef CONFIG_USER_STACK_TRACE_LENGTH
#define CONFIG_USER_STACK_TRACE_LENGTH 16
#endif
