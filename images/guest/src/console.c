/* The console: COM1, a 16550 UART, and a small printf. */
#include "guest.h"
#include <stdarg.h>

#define COM1 0x3f8
#define LSR_THR_EMPTY 0x20

void console_init(void)
{
    outb(COM1 + 1, 0x00); /* no UART interrupts */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
    outb(COM1 + 4, 0x03); /* DTR, RTS */
}

void console_putc(char c)
{
    for (int i = 0; i < 100000 && !(inb(COM1 + 5) & LSR_THR_EMPTY); i++) {
    }
    outb(COM1, (u8)c);
}

void console_write(const char *s, u64 n)
{
    for (u64 i = 0; i < n; i++) {
        console_putc(s[i]);
    }
}

u64 kstrlen(const char *s)
{
    u64 n = 0;
    while (s[n]) {
        n++;
    }
    return n;
}

int kstrncmp(const char *a, const char *b, u64 n)
{
    for (u64 i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i]) {
            return (u8)a[i] - (u8)b[i];
        }
    }
    return 0;
}

/* Whole words when everything is 8-byte aligned (pages are: zeroing and
 * copying them is what the process workloads spend their time on). */
void kmemset(void *p, int c, u64 n)
{
    u8 *b = p;
    if ((((u64)p | n) & 7) == 0) {
        u64 w = 0x0101010101010101ul * (u8)c, *q = p;
        for (u64 i = 0; i < n / 8; i++) {
            q[i] = w;
        }
        return;
    }
    for (u64 i = 0; i < n; i++) {
        b[i] = (u8)c;
    }
}

void kmemcpy(void *d, const void *s, u64 n)
{
    u8 *db = d;
    const u8 *sb = s;
    if ((((u64)d | (u64)s | n) & 7) == 0) {
        u64 *dq = d;
        const u64 *sq = s;
        for (u64 i = 0; i < n / 8; i++) {
            dq[i] = sq[i];
        }
        return;
    }
    for (u64 i = 0; i < n; i++) {
        db[i] = sb[i];
    }
}

/* gcc may turn loops into calls to these. */
void *memset(void *p, int c, u64 n)
{
    kmemset(p, c, n);
    return p;
}

void *memcpy(void *d, const void *s, u64 n)
{
    kmemcpy(d, s, n);
    return d;
}

static void put_number(u64 v, unsigned base, int width, char pad, int negative)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (negative) {
        buf[n++] = '-';
    }
    while (n < width) {
        console_putc(pad);
        width--;
    }
    while (n) {
        console_putc(buf[--n]);
    }
}

/* %s %c %d %u %x %p with optional 0-padding and width, and l/ll sizes. */
void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            console_putc(*p);
            continue;
        }
        p++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*p == '0') {
            pad = '0';
            p++;
        }
        while (*p >= '0' && *p <= '9') {
            width = width * 10 + (*p++ - '0');
        }
        while (*p == 'l') {
            longs++;
            p++;
        }
        switch (*p) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            console_write(s, kstrlen(s));
            break;
        }
        case 'c':
            console_putc((char)va_arg(ap, int));
            break;
        case 'd': {
            i64 v = longs ? va_arg(ap, i64) : va_arg(ap, int);
            put_number(v < 0 ? (u64)-v : (u64)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
            put_number(longs ? va_arg(ap, u64) : va_arg(ap, u32), 10, width, pad, 0);
            break;
        case 'x':
            put_number(longs ? va_arg(ap, u64) : va_arg(ap, u32), 16, width, pad, 0);
            break;
        case 'p':
            console_write("0x", 2);
            put_number((u64)va_arg(ap, void *), 16, width, pad, 0);
            break;
        case '%':
            console_putc('%');
            break;
        default:
            console_putc('?');
        }
    }
    va_end(ap);
}
