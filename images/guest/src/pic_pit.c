/* The 8259A PIC pair and the 8254 PIT. */
#include "guest.h"

#define PIC1 0x20
#define PIC2 0xa0
#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define PIT_HZ 1193182u

volatile u64 timer_ticks;

void pic_init(void)
{
    outb(PIC1, 0x11); /* ICW1: edge, cascade, ICW4 */
    outb(PIC2, 0x11);
    outb(PIC1 + 1, IRQ_BASE); /* ICW2: vectors */
    outb(PIC2 + 1, IRQ_BASE + 8);
    outb(PIC1 + 1, 0x04); /* ICW3: slave on IRQ2 */
    outb(PIC2 + 1, 0x02);
    outb(PIC1 + 1, 0x01); /* ICW4: 8086 mode */
    outb(PIC2 + 1, 0x01);
    pic_mask_all();
}

void pic_mask_all(void)
{
    outb(PIC1 + 1, 0xff);
    outb(PIC2 + 1, 0xff);
}

void pic_unmask(u8 irq)
{
    u16 port = irq < 8 ? PIC1 + 1 : PIC2 + 1;
    outb(port, inb(port) & (u8) ~(1u << (irq & 7)));
}

void pic_eoi(u8 irq)
{
    if (irq >= 8) {
        outb(PIC2, 0x20);
    }
    outb(PIC1, 0x20);
}

void pit_start(u32 hz)
{
    u32 divisor = PIT_HZ / hz;
    outb(PIT_CMD, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
    outb(PIT_CH0, (u8)divisor);
    outb(PIT_CH0, (u8)(divisor >> 8));
}

void pit_stop(void)
{
    outb(PIT_CMD, 0x30); /* mode 0, no count: never fires */
}

u16 pit_read_count(void)
{
    outb(PIT_CMD, 0x00); /* latch channel 0 */
    u8 lo = inb(PIT_CH0);
    u8 hi = inb(PIT_CH0);
    return (u16)(lo | (hi << 8));
}
