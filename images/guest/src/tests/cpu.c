/* cpu: cpuid, MSRs, the TSC. */
#include "guest.h"

void test_cpu(struct checker *c)
{
    u32 a, b, cx, d;
    cpuid(0, &a, &b, &cx, &d);
    char vendor[13];
    kmemcpy(vendor, &b, 4);
    kmemcpy(vendor + 4, &d, 4);
    kmemcpy(vendor + 8, &cx, 4);
    vendor[12] = 0;
    kprintf("cpu: vendor %s, max leaf %u\n", vendor, a);
    check_true(c, "cpuid leaf 0 reports leaf 1", a >= 1);
    cpuid(0x80000001u, &a, &b, &cx, &d);
    check_true(c, "cpuid reports long mode", (d >> 29) & 1);

    u64 efer = rdmsr(MSR_EFER);
    kprintf("cpu: EFER.LME %lu, EFER.LMA %lu\n", (efer >> 8) & 1, (efer >> 10) & 1);
    check_eq(c, "EFER.LME and LMA set", 0x500, efer & 0x500);

    u64 old = rdmsr(MSR_FS_BASE);
    wrmsr(MSR_FS_BASE, 0x123456789000ul);
    check_eq(c, "FS base reads back", 0x123456789000ul, rdmsr(MSR_FS_BASE));
    wrmsr(MSR_FS_BASE, old);

    u64 t0 = rdtsc(), t1 = rdtsc(), t2 = rdtsc();
    check_true(c, "rdtsc is monotonic", t0 < t1 && t1 < t2);
}
