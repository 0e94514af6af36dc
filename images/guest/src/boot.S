/* Entries of the guest kernel.
 *
 * _start32: the multiboot-1 entry for bare hardware. It builds an identity
 * map of the low 1 GiB, enters long mode and calls multiboot_main. This code
 * only ever runs on bare metal (the wedge enters at pv_entry), so it is an
 * opted-out region for the afterburner.
 *
 * pv_entry: the 64-bit PV entry (docs/pv-boot.md): paging on with the low
 * memory identity mapped, flat segments, interrupts off, rdi = boot info. */

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00010003 /* page-align modules, memory info, a.out kludge */

    .section .multiboot, "a"
    .balign 8
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header /* header_addr */
    .long __image_start    /* load_addr: the file's first byte */
    .long __data_end       /* load_end_addr */
    .long __image_end      /* bss_end_addr */
    .long _start32         /* entry_addr */
    /* The PV entry header the VMM looks for (docs/pv-boot.md). */
    .balign 8
pv_header:
    .long 0x31455650 /* "PVE1" */
    .long 1          /* version */
    .quad pv_entry

    .section .text.boot, "ax"
    .code32
    .global _start32
_start32:
    /* The 32-bit trampoline runs only on bare metal: not pre-virtualized. */
# afterburn: off
    cli
    mov $boot_stack_top, %esp
    mov %ebx, %edi /* multiboot info, kept for the 64-bit code */

    /* Identity map 0..1 GiB with 2 MiB pages. */
    mov $boot_pd, %eax
    xor %ecx, %ecx
1:  mov %ecx, %edx
    shl $21, %edx
    or $0x83, %edx /* present, writable, 2 MiB */
    mov %edx, (%eax, %ecx, 8)
    movl $0, 4(%eax, %ecx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 1b
    movl $boot_pd + 3, boot_pdpt
    movl $boot_pdpt + 3, boot_pml4

    mov %cr4, %eax
    or $0x20, %eax /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax /* PG | WP | PE: write protection holds in ring 0 too */
    mov %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
# afterburn: on
    mov $boot_stack_top, %rsp
    mov %edi, %edi
    call multiboot_main
2:  jmp 2b

    .global pv_entry
pv_entry:
    mov $boot_stack_top, %rsp
    call kernel_main
3:  jmp 3b

    .section .rodata
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff /* 0x10: data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss
    .balign 4096
    .global boot_pml4
boot_pml4: .skip 4096
    .global boot_pdpt
boot_pdpt: .skip 4096
boot_pd: .skip 4096
boot_stack: .skip 16384
boot_stack_top:
