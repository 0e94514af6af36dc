/* console: the 16550 and string port output. */
#include "guest.h"

void test_console(struct checker *c)
{
    static const char line[] = "console: written with rep outsb\n";
    /* The UART accepts a burst without waiting when its FIFO is empty. */
    for (int i = 0; i < 100000 && !(inb(0x3f8 + 5) & 0x40); i++) {
    }
    check_eq(c, "line status: transmitter empty", 0x60, inb(0x3f8 + 5) & 0x60);
    outsb(0x3f8, line, sizeof(line) - 1);
    kprintf("console: written with outb\n");
    check_eq(c, "line control reads back 8N1", 0x03, inb(0x3f8 + 3));
    outb(0x3f8 + 7, 0x5a); /* scratch register */
    check_eq(c, "scratch register reads back", 0x5a, inb(0x3f8 + 7));
}
