/*
 * A stand-in kernel that measures the firmware: QEMU boots it with
 * `-kernel` as it boots Linux (SeaBIOS, then an option ROM that jumps to
 * the kernel), and its first instruction reads the TSC. It prints
 * `firmware: tsc TICKS` on COM1 and ends the run through QEMU's
 * isa-debug-exit port. `cargo xtask bench` subtracts the value from the
 * bare Linux boot's (docs/linux.md, "Boot and /init in ticks").
 *
 * A multiboot kernel (the header below), 32-bit, no C library.
 */

static void outb(unsigned short port, unsigned char value)
{
	__asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static unsigned char inb(unsigned short port)
{
	unsigned char value;
	__asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

enum { COM1 = 0x3f8, EXIT_PORT = 0xf4 };

static void put(char c)
{
	while (!(inb(COM1 + 5) & 0x20)) /* transmitter holding register empty */
		;
	outb(COM1, (unsigned char)c);
}

void firmware_time(unsigned long long ticks)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + ticks % 10);
		ticks /= 10;
	} while (ticks);
	for (const char *s = "firmware: tsc "; *s; s++)
		put(*s);
	while (n)
		put(digits[--n]);
	put('\n');
	outb(EXIT_PORT, 0); /* QEMU exits with status 1 */
	for (;;)
		__asm__ volatile("hlt");
}

/*
 * The multiboot header (magic, no flags, checksum), first in .text so that
 * it is in the file's first 8 KiB; then the entry: rdtsc first, then a
 * stack, then C.
 */
__asm__(".text\n"
	".align 4\n"
	"	.long 0x1badb002, 0, -0x1badb002\n"
	".globl _start\n"
	"_start:\n"
	"	rdtsc\n"
	"	mov $stack_top, %esp\n"
	"	push %edx\n"
	"	push %eax\n"
	"	call firmware_time\n"
	".bss\n"
	".align 16\n"
	"	.skip 4096\n"
	"stack_top:\n"
	".text\n");
