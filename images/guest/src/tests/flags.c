/* flags: cli/sti/pushf/popf and nested interrupt save/restore. */
#include "guest.h"

void test_flags(struct checker *c)
{
    cli();
    check_eq(c, "IF clear after cli", 0, save_flags() & RFLAGS_IF);
    sti();
    check_eq(c, "IF set after sti", RFLAGS_IF, save_flags() & RFLAGS_IF);

    u64 outer = irq_save();
    check_eq(c, "IF clear inside the outer section", 0, save_flags() & RFLAGS_IF);
    u64 inner = irq_save();
    check_eq(c, "inner save saw IF clear", 0, inner & RFLAGS_IF);
    restore_flags(inner);
    check_eq(c, "IF still clear after the inner restore", 0, save_flags() & RFLAGS_IF);
    restore_flags(outer);
    check_eq(c, "IF set again after the outer restore", RFLAGS_IF, save_flags() & RFLAGS_IF);

    /* popf with IF clear from an interrupts-on state, and other flags kept. */
    restore_flags((save_flags() & ~RFLAGS_IF) | 0x1); /* CF */
    u64 f = save_flags();
    check_eq(c, "popf cleared IF and set CF", 0x1, f & (RFLAGS_IF | 0x1));
    cli();
}
