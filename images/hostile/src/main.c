/* The hostile test guest: boots through the PV entry like images/guest,
 * then runs the attacks its command line names (`attack=a,b`), each
 * printing what it did and what came back. An attack the VMM must answer
 * by ending the guest says so before its last step; reaching the end
 * of the list means every answer came back as expected. */
#include "hostile.h"

static const struct pv_boot_info *boot;

/* Bare hardware has no VMM to attack: the multiboot entry only says so. */
void multiboot_main(const void *mbi)
{
    (void)mbi;
    console_init();
    kprintf("hostile: needs the PV entry (a VMM); nothing to attack on bare hardware\n");
    guest_exit(0);
}

void guest_exit(int passed)
{
    outb(0xf4, passed ? 0 : 1); /* the exit port: QEMU exits 1 (pass) or 3 */
    for (;;) {
        cli();
        __asm__ volatile("hlt");
    }
}

u64 ram_end(void)
{
    return boot->mmap[0].base + boot->mmap[0].length;
}

void expect(struct report *r, int ok, const char *what)
{
    if (ok) {
        r->expected++;
    } else {
        r->unexpected++;
        kprintf("hostile: %s: UNEXPECTED: %s\n", r->attack, what);
    }
}

static const struct {
    const char *name;
    void (*run)(struct report *r);
} attacks[] = {
    { "ipc", attack_ipc },
    { "jumps", attack_jumps },
    { "ptloop", attack_ptloop },
    { "caps", attack_caps },
    { "recv", attack_recv },
    { "wedge-code", attack_wedge_code },
    { "wedge-alias", attack_wedge_alias },
    { "wedge-state", attack_wedge_state },
    { "wedge-middle", attack_wedge_middle },
    { "syscall", attack_syscall },
    { "cr3", attack_cr3 },
    { "halt", attack_halt },
    { "sleep", attack_sleep },
    { "spin", attack_spin },
    { "syscalls", attack_syscalls },
    { "ints", attack_ints },
};

/* `sys:NUMBER[@SLOT]`: NUMBER a signed 64-bit decimal, SLOT an unsigned
 * one (default 1, its endpoint). Returns whether `s` (of `len` bytes) is
 * one. */
static int decimal(const char *s, u64 len, int sign_allowed, i64 *signed_value, u64 *value)
{
    int negative = sign_allowed && len > 0 && s[0] == '-';
    u64 i = negative ? 1 : 0, v = 0;
    if (i == len) {
        return 0;
    }
    /* The magnitude's limit: 2^63 for a negative number, 2^63 - 1 for a
     * positive signed one, 2^64 - 1 otherwise. */
    u64 limit = sign_allowed ? (negative ? 1ul << 63 : (1ul << 63) - 1) : ~0ul;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        u64 d = (u64)(s[i] - '0');
        if (v > (limit - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    if (signed_value) {
        *signed_value = negative ? (i64)(0 - v) : (i64)v;
    }
    if (value) {
        *value = v;
    }
    return 1;
}

static int parse_sys(const char *s, u64 len, i64 *number, u64 *slot)
{
    if (len < 4 || kstrncmp(s, "sys:", 4)) {
        return 0;
    }
    s += 4;
    len -= 4;
    u64 at = 0;
    while (at < len && s[at] != '@') {
        at++;
    }
    *slot = SLOT_VMM;
    return decimal(s, at, 1, number, NULL) && (at == len || decimal(s + at + 1, len - at - 1, 0, NULL, slot));
}

static int find(const char *name, u64 len)
{
    for (u64 i = 0; i < ARRAY_SIZE(attacks); i++) {
        if (kstrlen(attacks[i].name) == len && !kstrncmp(name, attacks[i].name, len)) {
            return (int)i;
        }
    }
    return -1;
}

/* The value of `attack=` in the command line, and its length. */
static const char *attack_option(const char *p, u64 *len)
{
    while (p && *p) {
        while (*p == ' ') {
            p++;
        }
        const char *end = p;
        while (*end && *end != ' ') {
            end++;
        }
        if (end - p > 7 && !kstrncmp(p, "attack=", 7)) {
            *len = (u64)(end - p) - 7;
            return p + 7;
        }
        p = end;
    }
    return NULL;
}

void kernel_main(const struct pv_boot_info *info)
{
    console_init();
    if (!info || info->magic != PV_BOOT_MAGIC || info->version != PV_BOOT_VERSION || !info->mmap_count) {
        kprintf("hostile: bad boot information\n");
        guest_exit(0);
    }
    boot = info;
    boot_cr3 = read_cr3();
    gdt_init();
    traps_init();
    u64 len = 0;
    const char *list = attack_option((const char *)info->cmdline, &len);
    if (!list) {
        kprintf("hostile: no attack=NAME[,NAME...] on the command line; attacks:");
        for (u64 i = 0; i < ARRAY_SIZE(attacks); i++) {
            kprintf(" %s", attacks[i].name);
        }
        kprintf(" sys:NUMBER[@SLOT]\n");
        guest_exit(0);
    }
    kprintf("hostile: previrt hostile guest; attack=");
    console_write(list, len);
    kprintf("\n");
    /* Every name is checked before any attack runs. */
    for (u64 start = 0, i = 0; i <= len; i++) {
        if (i == len || list[i] == ',') {
            i64 number;
            u64 slot;
            if (find(list + start, i - start) < 0 && !parse_sys(list + start, i - start, &number, &slot)) {
                kprintf("hostile: unknown attack '");
                console_write(list + start, i - start);
                kprintf("'\n");
                guest_exit(0);
            }
            start = i + 1;
        }
    }
    u32 ran = 0, unexpected = 0;
    for (u64 start = 0, i = 0; i <= len; i++) {
        if (i == len || list[i] == ',') {
            int a = find(list + start, i - start);
            i64 number;
            u64 slot;
            struct report r = { a >= 0 ? attacks[a].name : "sys", 0, 0 };
            if (a >= 0) {
                attacks[a].run(&r);
            } else if (parse_sys(list + start, i - start, &number, &slot)) {
                attack_sys(&r, number, slot);
            }
            kprintf("hostile: %s: %u answers as expected, %u unexpected\n", r.attack, r.expected,
                    r.unexpected);
            ran++;
            unexpected += r.unexpected;
            start = i + 1;
        }
    }
    kprintf("hostile: survived %u attacks, %u unexpected answers\n", ran, unexpected);
    guest_exit(unexpected == 0);
}
