/*
 * /bin/tsc NAME: prints `init: tsc NAME TICKS`, the time-stamp counter as
 * this process read it, and exits. `/init` runs it at its start and around
 * its workload; `cargo xtask bench` reads the lines (docs/linux.md,
 * "Boot and /init in ticks"). Under QEMU `-icount shift=0` the TSC counts
 * instructions (and idle time skipped to the next timer), on the bare
 * machine and on seL4 alike: the wedge leaves `rdtsc` native.
 *
 * Static, without a C library (busybox has no way to read the TSC): the
 * first thing it does is read the counter, then one write(2) and exit(2).
 * Built by xtask with the host's gcc: gcc -static -nostdlib -O2.
 */

typedef unsigned long u64;

static long syscall3(long number, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(number), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

enum { SYS_WRITE = 1, SYS_EXIT = 60 };

/* Appends `s` to `out` at `*at`, never past `size`. */
static void append(char *out, int size, int *at, const char *s)
{
	while (*s && *at < size)
		out[(*at)++] = *s++;
}

void tsc_main(long *stack)
{
	unsigned lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	u64 ticks = ((u64)hi << 32) | lo;

	/* The stack at entry: argc, argv[0], argv[1], ... */
	long argc = stack[0];
	const char *name = argc > 1 ? (const char *)stack[2] : "unnamed";

	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + ticks % 10);
		ticks /= 10;
	} while (ticks);

	char line[128];
	int at = 0;
	append(line, sizeof line - 1, &at, "init: tsc ");
	append(line, sizeof line - 1 - n - 1, &at, name);
	line[at++] = ' ';
	while (n)
		line[at++] = digits[--n];
	line[at++] = '\n';
	long written = syscall3(SYS_WRITE, 1, (long)line, at);
	syscall3(SYS_EXIT, written == at ? 0 : 1, 0, 0);
	for (;;)
		;
}

/* The entry: the kernel's stack pointer is the argument block. */
__asm__(".globl _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call tsc_main\n"
	"	ud2\n");
