/* timer: the 8259 PIC and the 8254 PIT at 1 kHz. */
#include "guest.h"

static int specific_eoi;
static void on_tick(struct trap_frame *f)
{
    (void)f;
    timer_ticks++;
    if (specific_eoi) {
        outb(0x20, 0x60); /* specific EOI for IRQ 0 */
    } else {
        pic_eoi(0);
    }
}

/* Waits for `periods` PIT periods by watching the count reload; works with
 * interrupts off. */
static void wait_periods(int periods)
{
    u16 last = pit_read_count();
    for (int seen = 0; seen < periods;) {
        u16 now = pit_read_count();
        if (now > last) {
            seen++;
        }
        last = now;
    }
}

void test_timer(struct checker *c)
{
    cli();
    pic_init();
    trap_set_handler(IRQ_BASE + 0, on_tick);
    pic_unmask(0);
    pit_start(1000);
    timer_ticks = 0;

    for (int i = 0; i < 10; i++) {
        sti_hlt();
        cli();
    }
    check_true(c, "ten sti;hlt each woke on a tick", timer_ticks >= 10);

    u64 start = timer_ticks;
    sti();
    wait_periods(20);
    cli();
    check_true(c, "ticks arrive during a busy loop", timer_ticks >= start + 10);

    start = timer_ticks;
    wait_periods(5);
    check_eq(c, "no tick is delivered while interrupts are disabled", start, timer_ticks);
    sti();
    wait_periods(1);
    cli();
    check_true(c, "the held tick arrives after sti", timer_ticks > start);

    specific_eoi = 1;
    start = timer_ticks;
    sti();
    wait_periods(10);
    cli();
    specific_eoi = 0;
    check_true(c, "ticks keep coming with specific EOIs", timer_ticks >= start + 5);

    pit_stop();
    pic_mask_all();
    trap_set_handler(IRQ_BASE + 0, NULL);
}
