/* Boot, the command line, and running the self-tests and workloads. */
#include "guest.h"

/* The multiboot-1 information structure (the fields we read). */
struct multiboot_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};
#define MB_INFO_MEMORY 0x1
#define MB_INFO_CMDLINE 0x4

static struct pv_boot_info boot_from_multiboot;

/* The multiboot path: translate the boot loader's information into the PV
 * boot information both entries hand to kernel_main. */
void multiboot_main(const struct multiboot_info *mbi)
{
    struct pv_boot_info *b = &boot_from_multiboot;
    b->magic = PV_BOOT_MAGIC;
    b->version = PV_BOOT_VERSION;
    b->cmdline = (mbi->flags & MB_INFO_CMDLINE) ? mbi->cmdline : 0;
    if (mbi->flags & MB_INFO_MEMORY) {
        b->mmap[0] = (struct pv_mmap_entry){ 0, (u64)mbi->mem_lower << 10, PV_MMAP_RAM, 0 };
        b->mmap[1] = (struct pv_mmap_entry){ 0x100000, (u64)mbi->mem_upper << 10, PV_MMAP_RAM, 0 };
        b->mmap_count = 2;
    }
    kernel_main(b);
}

static const struct selftest selftests[] = {
    { "console", test_console }, { "cpu", test_cpu },       { "flags", test_flags },
    { "desc", test_desc },       { "paging", test_paging }, { "exceptions", test_exceptions },
    { "timer", test_timer },     { "user", test_user },
};

void guest_exit(int passed)
{
    outb(0xf4, passed ? 0 : 1); /* isa-debug-exit: QEMU exits 1 (pass) or 3 */
    for (;;) {
        cli();
        __asm__ volatile("hlt");
    }
}

/* Finds `key=` in the command line; returns the value and its length. */
static const char *option(const char *cmdline, const char *key, u64 *len)
{
    u64 klen = kstrlen(key);
    for (const char *p = cmdline; p && *p;) {
        while (*p == ' ') {
            p++;
        }
        const char *end = p;
        while (*end && *end != ' ') {
            end++;
        }
        if ((u64)(end - p) > klen && !kstrncmp(p, key, klen) && p[klen] == '=') {
            *len = (u64)(end - p) - klen - 1;
            return p + klen + 1;
        }
        p = end;
    }
    return NULL;
}

/* The number value[0..len) of option `key`, at most `max`; a guest given
 * anything else says so and stops. */
static u64 number_option(const char *key, const char *value, u64 len, u64 max)
{
    u64 n = 0;
    for (u64 i = 0; i < len; i++) {
        char ch = value[i];
        if (ch < '0' || ch > '9' || n > max) {
            n = max + 1;
            break;
        }
        n = n * 10 + (u64)(ch - '0');
    }
    if (len == 0 || n > max) {
        kprintf("guest: %s=", key);
        console_write(value, len);
        kprintf(" is not a number up to %lu\n", max);
        guest_exit(0);
    }
    return n;
}

/* Calls `each` for every comma-separated name in value[0..len). */
static int for_each_name(const char *value, u64 len, int (*each)(const char *, u64))
{
    int ok = 1;
    u64 start = 0;
    for (u64 i = 0; i <= len; i++) {
        if (i == len || value[i] == ',') {
            ok &= each(value + start, i - start);
            start = i + 1;
        }
    }
    return ok;
}

static int name_is(const char *name, u64 len, const char *known)
{
    return kstrlen(known) == len && !kstrncmp(name, known, len);
}

static u32 passed, failed;

static int run_test(const char *name, u64 len)
{
    int all = name_is(name, len, "all");
    int found = 0;
    for (u64 i = 0; i < ARRAY_SIZE(selftests); i++) {
        if (all || name_is(name, len, selftests[i].name)) {
            struct checker c = { selftests[i].name, 0, 0 };
            selftests[i].run(&c);
            kprintf("%s: %s (%u checks)\n", c.test, c.failures ? "FAILED" : "passed", c.checks);
            if (c.failures) {
                failed++;
            } else {
                passed++;
            }
            found = 1;
        }
    }
    return found;
}

static int valid_test(const char *name, u64 len)
{
    if (name_is(name, len, "all")) {
        return 1;
    }
    for (u64 i = 0; i < ARRAY_SIZE(selftests); i++) {
        if (name_is(name, len, selftests[i].name)) {
            return 1;
        }
    }
    kprintf("unknown test '");
    console_write(name, len);
    kprintf("'; valid tests: all");
    for (u64 i = 0; i < ARRAY_SIZE(selftests); i++) {
        kprintf(", %s", selftests[i].name);
    }
    kprintf("\n");
    return 0;
}

/* The benchmark workloads, then the mapping-consistency ones (not in
 * `all`: the experiment runs them, docs/vtlb.md). */
static const struct workload *find_workload(const char *name, u64 len)
{
    for (u64 i = 0; i < workload_count; i++) {
        if (name_is(name, len, workloads[i].name)) {
            return &workloads[i];
        }
    }
    for (u64 i = 0; i < mapping_workload_count; i++) {
        if (name_is(name, len, mapping_workloads[i].name)) {
            return &mapping_workloads[i];
        }
    }
    return NULL;
}

static int valid_workload(const char *name, u64 len)
{
    if (name_is(name, len, "all") || find_workload(name, len)) {
        return 1;
    }
    kprintf("unknown workload '");
    console_write(name, len);
    kprintf("'; valid workloads: all");
    for (u64 i = 0; i < workload_count; i++) {
        kprintf(", %s", workloads[i].name);
    }
    for (u64 i = 0; i < mapping_workload_count; i++) {
        kprintf(", %s", mapping_workloads[i].name);
    }
    kprintf("\n");
    return 0;
}

/* Set by a workload that measures its own ticks (timer). */
u64 bench_ticks;
/* iterations=N on the command line: every workload runs N times. */
static u64 iterations_override;

static void bench_one(const struct workload *w)
{
    u64 n = iterations_override ? iterations_override : w->iterations;
    bench_ticks = 0;
    u64 start = rdtsc();
    w->run(n);
    u64 ticks = rdtsc() - start;
    if (bench_ticks) {
        ticks = bench_ticks;
    }
    kprintf("bench %s %lu %lu\n", w->name, n, ticks);
}

static int run_workload(const char *name, u64 len)
{
    if (name_is(name, len, "all")) {
        for (u64 i = 0; i < workload_count; i++) {
            bench_one(&workloads[i]);
        }
    } else {
        bench_one(find_workload(name, len));
    }
    return 1;
}

void kernel_main(const struct pv_boot_info *boot)
{
    console_init();
    if (!boot || boot->magic != PV_BOOT_MAGIC || boot->version != PV_BOOT_VERSION) {
        kprintf("guest: bad boot information\n");
        guest_exit(0);
    }
    const char *cmdline = (const char *)boot->cmdline;
    boot_cr3 = read_cr3();
    gdt_init();
    traps_init();
    /* The firmware leaves the PIC delivering IRQ 0 on vector 8 (a CPU
     * exception vector): remap it and mask everything before any sti. */
    pic_init();

    u64 tests_len = 0, bench_len = 0, stress_len = 0, iterations_len = 0;
    const char *tests = option(cmdline, "tests", &tests_len);
    const char *bench = option(cmdline, "bench", &bench_len);
    const char *stress_arg = option(cmdline, "stress", &stress_len);
    const char *iterations = option(cmdline, "iterations", &iterations_len);
    if (iterations) {
        iterations_override = number_option("iterations", iterations, iterations_len, 100000000);
    }
    if (stress_arg) {
        u64 seconds = number_option("stress", stress_arg, stress_len, 100000);
        kprintf("guest: previrt test kernel; stress=%lu\n", seconds);
        stress(seconds);
        guest_exit(1);
    }
    if (!tests && !bench) {
        tests = "all";
        tests_len = 3;
    }
    /* The options, not the raw command line: boot loaders put the kernel's
     * path in front of it, and the output must not depend on where it is. */
    kprintf("guest: previrt test kernel; tests=");
    console_write(tests ? tests : "", tests_len);
    kprintf(" bench=");
    console_write(bench ? bench : "", bench_len);
    kprintf("\n");
    /* Validate every name before running anything. */
    int ok = 1;
    if (tests) {
        ok &= for_each_name(tests, tests_len, valid_test);
    }
    if (bench) {
        ok &= for_each_name(bench, bench_len, valid_workload);
    }
    if (!ok) {
        guest_exit(0);
    }
    if (tests) {
        for_each_name(tests, tests_len, run_test);
        kprintf("selftest: %u passed, %u failed\n", passed, failed);
    }
    if (bench) {
        for_each_name(bench, bench_len, run_workload);
    }
    /* A mapping workload that read through a stale mapping fails the run. */
    guest_exit(failed == 0 && mapping_wrong == 0);
}

void check_eq(struct checker *c, const char *what, u64 expected, u64 actual)
{
    c->checks++;
    if (expected != actual) {
        c->failures++;
        kprintf("%s: check '%s' failed: expected 0x%lx, got 0x%lx\n", c->test, what, expected, actual);
    }
}

void check_true(struct checker *c, const char *what, int ok)
{
    c->checks++;
    if (!ok) {
        c->failures++;
        kprintf("%s: check '%s' failed\n", c->test, what);
    }
}
