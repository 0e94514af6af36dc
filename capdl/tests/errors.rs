//! One case for every kind of error a spec can have: the exact message and
//! the exact line:col.

/// A spec with `objects` on line 3 and `caps` on line 6 (and `irqs`, if
/// any, on line 9).
fn spec(objects: &str, caps: &str, irqs: &str) -> String {
    format!(
        "arch x86_64\nobjects {{\n{objects}\n}}\ncaps {{\n{caps}\n}}\nirq maps {{\n{irqs}\n}}\n"
    )
}

/// `line:col: message`, with the column where `needle` starts on `line`
/// (its `nth` occurrence, from 0).
fn at(source: &str, line: usize, needle: &str, nth: usize, message: &str) -> String {
    let text = source.lines().nth(line - 1).expect("line exists");
    let col = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` not on line {line}: {text}"))
        .0
        + 1;
    format!("{line}:{col}: {message}")
}

fn errors(source: &str) -> Vec<String> {
    match capdl::check(source) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// Checks that `objects`/`caps`/`irqs` give exactly one error: `message`
/// where the `nth` `needle` is on `line`.
#[track_caller]
fn one(
    objects: &str,
    caps: &str,
    irqs: &str,
    line: usize,
    needle: &str,
    nth: usize,
    message: &str,
) {
    let source = spec(objects, caps, irqs);
    assert_eq!(
        errors(&source),
        vec![at(&source, line, needle, nth, message)],
        "in:\n{source}"
    );
}

/// A thread with everything it needs, to use in cases about other things.
const THREAD: &str = "t = tcb; tc = cnode (2 bits); tv = pml4";
const THREAD_CAPS: &str = "t { cspace: tc; vspace: tv }";

#[test]
fn valid_template_has_no_error() {
    assert_eq!(errors(&spec(THREAD, THREAD_CAPS, "")), Vec::<String>::new());
}

#[test]
fn every_pml4_slot_but_sel4s_is_the_users() {
    // 256 is seL4's (its refusal is among the slot errors below).
    for caps in ["r { 0: d }", "r { 255: d }", "r { 257: d }", "r { 511: d }"] {
        let source = spec("r = pml4; d = pdpt", caps, "");
        assert_eq!(errors(&source), Vec::<String>::new(), "{caps}");
    }
}

// ---- lexer ----

#[test]
fn lex_errors() {
    let source = "arch x86_64\nobjects { a = ep $ }\n";
    assert_eq!(errors(source), vec!["2:18: unexpected character '$'"]);
    assert_eq!(
        errors("arch x86_64 /* open"),
        vec!["1:13: comment is not closed (`/*` without `*/`)"]
    );
    let source =
        "arch x86_64\nobjects { f = frame (4k, fill: [{0 1 CDL_FrameFill_FileData \"x 0}]) }";
    assert_eq!(
        errors(source),
        vec![
            at(
                source,
                2,
                "\"",
                0,
                "string is not closed before the end of the line"
            ),
            // One message for the end of the file, however many blocks it ends.
            "2:70: expected a file name, found end of file".to_string(),
        ]
    );
    let big = "0x1_0000_0000_0000_0000_0000_0000_0000_0000";
    assert_eq!(
        errors(&format!(
            "arch x86_64\nobjects {{ c = cnode ({big} bits) }}"
        )),
        vec![format!("2:22: number `{big}` is too large")]
    );
    assert_eq!(
        errors("arch x86_64\nirq maps { 0x: a }"),
        vec![
            "2:12: number `0x` has no digits after its prefix",
            "2:14: expected an IRQ number, found `:`"
        ]
    );
}

// ---- parser ----

#[test]
fn parse_errors() {
    assert_eq!(
        errors("arch x86_64\nobjects {\n  a = (4k)\n  b = ep\n}\ncaps {\n}\n"),
        vec!["3:7: expected an object type, found `(`"]
    );
    assert_eq!(
        errors("objects { a = ep }"),
        vec!["1:1: a spec starts with `arch x86_64`"]
    );
    assert_eq!(
        errors("arch aarch64"),
        vec!["1:6: architecture `aarch64` is not supported: previrt specs are `arch x86_64`"]
    );
    assert_eq!(
        errors("arch x86_64\ncdt { (a, 1) { (b, 2) } }"),
        vec!["2:1: section `cdt` is not supported (sections: `objects`, `caps`, `irq maps`)"]
    );
    assert_eq!(
        errors("arch x86_64\nobjects { a[1..2] = ep }"),
        vec!["2:11: an object array is declared with its length, as `name[N]`"]
    );
    assert_eq!(
        errors("arch x86_64\nobjects { f = frame (4k, fill: [{0 8 CDL_FrameFill_BootInfo x 0}]) }"),
        vec!["2:38: frame fill `CDL_FrameFill_BootInfo` is not supported (only CDL_FrameFill_FileData)"]
    );
}

#[test]
fn errors_of_every_statement_and_stage_come_together() {
    let source = "arch x86_64\nobjects {\n  a = (4k)\n  b = frame (3k)\n  c = cnode (2 bits)\n}\ncaps {\n  c { 1: b (RWG); 2: nowhere }\n}\n";
    assert_eq!(
        errors(source),
        vec![
            "3:7: expected an object type, found `(`",
            "4:14: a frame is 4k or 2M, not 0xc00 bytes",
        ]
    );
    // Without the syntax error, the unknown name is reported too.
    let source = source.replace("a = (4k)", "a = ep");
    assert_eq!(
        errors(&source),
        vec![
            "4:14: a frame is 4k or 2M, not 0xc00 bytes",
            "8:22: no object is named `nowhere`",
        ]
    );
}

// ---- objects ----

#[test]
fn object_declaration_errors() {
    one("a = page", "", "", 3, "page", 0,
        "unknown object type `page` (types: ut, frame, pt, pd, pdpt, pml4, asid_pool, cnode, tcb, ep, notification, ioapic_irq, io_ports)");
    one("i = irq", "", "", 3, "irq", 0,
        "`irq` objects are not supported: previrt's kernel routes IRQs through the IOAPIC, declare `ioapic_irq (ioapic_pin: N)`");
    one(
        "e = ep (4 bits)",
        "",
        "",
        3,
        "4",
        0,
        "an endpoint takes no parameter `bits`",
    );
    one(
        "c = cnode (4 bits, 5 bits)",
        "",
        "",
        3,
        "5",
        0,
        "parameter `bits` is given twice",
    );
    one(
        "c = cnode",
        "",
        "",
        3,
        "cnode",
        0,
        "a CNode needs a size (`N bits`)",
    );
    one(
        "f = frame (paddr: 0x1000)",
        "",
        "",
        3,
        "frame",
        0,
        "a frame needs a size (`4k` or `2M`)",
    );
    one(
        "c = cnode (0 bits)",
        "",
        "",
        3,
        "0",
        0,
        "a CNode of 0 bits is not possible: seL4 allows 1 to 42",
    );
    one(
        "u = ut (48 bits)",
        "",
        "",
        3,
        "48",
        0,
        "an untyped of 48 bits is not possible: seL4 allows 4 to 47",
    );
    one(
        "f = frame (1M)",
        "",
        "",
        3,
        "1M",
        0,
        "a frame is 4k or 2M, not 0x100000 bytes",
    );
    one(
        "f = frame (2M, paddr: 0x1000)",
        "",
        "",
        3,
        "paddr",
        0,
        "paddr 0x1000 is not aligned to 0x200000",
    );
    one(
        "t = tcb (addr: 0x1100)",
        "",
        "",
        3,
        "addr",
        0,
        "IPC buffer address 0x1100 is not aligned to 0x400",
    );
    one(
        "t = tcb (prio: 256)",
        "",
        "",
        3,
        "prio",
        0,
        "prio 256 is too large (at most 255)",
    );
    one(
        "i = ioapic_irq (ioapic_pin: 24)",
        "",
        "0: i",
        3,
        "ioapic_pin",
        0,
        "ioapic_pin 24 is too large (at most 23)",
    );
    one(
        "i = ioapic_irq (ioapic_level: 1)",
        "",
        "0: i",
        3,
        "ioapic_irq",
        0,
        "an IRQ needs `ioapic_pin:`",
    );
    one(
        "p = io_ports (ports: [0x50..0x40])",
        "",
        "",
        3,
        "ports:",
        0,
        "port range 0x50..0x40 is not a range of x86 I/O ports (0 to 0xffff, first <= last)",
    );
    one(
        "p = io_ports",
        "",
        "",
        3,
        "io_ports",
        0,
        "an I/O port range needs `ports: [first..last]`",
    );
    one(
        "p = io_ports (ports: [0x40..0x43]); q = io_ports (ports: [0x43..0x44])",
        "",
        "",
        3,
        "q",
        0,
        "ports 0x43..0x44 overlap those of `p` (the kernel issues each port once)",
    );
    one(
        "f = frame (4k, fill: [{0x800 0x801 CDL_FrameFill_FileData \"a\" 0}])",
        "",
        "",
        3,
        "{",
        0,
        "fill of 0x801 bytes at offset 0x800 runs past the end of the 0x1000-byte frame",
    );
    one(
        "t = tcb (init: [1, 2, 3, 4, 5, 6, 7])",
        "",
        "",
        3,
        "init",
        0,
        "7 init arguments, but a thread has 6 argument registers",
    );
    one(
        "e = ep; e = notification",
        "",
        "",
        3,
        "e =",
        1,
        "`e` is already declared at 3:1",
    );
    one(
        "f[2000000] = frame (4k)",
        "",
        "",
        3,
        "f",
        0,
        "the spec declares more than 1048576 objects",
    );

    one(
        "c[4096] = cnode (12 bits)",
        "c[] { 0: c[] }",
        "",
        6,
        "0",
        0,
        "the spec has more than 4194304 caps (caps after this one are not checked)",
    );
}

#[test]
fn untyped_errors() {
    one(
        "e = ep { x = ep }",
        "",
        "",
        3,
        "{",
        0,
        "only untypeds cover other objects, and `e` is not one",
    );
    one(
        "u[2] = ut (12 bits) { x = ep }",
        "",
        "",
        3,
        "{",
        0,
        "untyped array `u` cannot cover objects: declare single untypeds for that",
    );
    one(
        "u = ut (12 bits) { x }; v = ut (12 bits) { x }; x = ep",
        "",
        "",
        3,
        "x",
        1,
        "`x` is already covered by untyped `u`",
    );
    one(
        "u = ut (12 bits) { v }; v = ut (12 bits) { u }",
        "",
        "",
        3,
        "v }",
        0,
        "untyped `u` covers itself",
    );
    one(
        "u = ut (12 bits) { u }",
        "",
        "",
        3,
        "u }",
        0,
        "untyped `u` covers itself",
    );
    one(
        "u = ut (12 bits) { p }; p = io_ports (ports: [1..2])",
        "",
        "",
        3,
        "p }",
        0,
        "`p` is an I/O port range, which the kernel issues without untyped memory",
    );
    one(
        "u = ut (12 bits) { f = frame (4k), e = ep }",
        "",
        "",
        3,
        "u",
        0,
        "the objects untyped `u` covers need 0x1010 bytes, but it has 0x1000",
    );
}

// ---- names ----

#[test]
fn name_errors() {
    one(
        "c = cnode (2 bits)",
        "c { 1: nothing }",
        "",
        6,
        "nothing",
        0,
        "no object is named `nothing`",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 1: e[0] }",
        "",
        6,
        "e",
        0,
        "`e` is not an array",
    );
    one(
        "c = cnode (2 bits); e[2] = ep",
        "c { 1: e }",
        "",
        6,
        "e",
        0,
        "`e` is an array of 2: name an element (`e[0]`) or elements (`e[]`)",
    );
    one(
        "c = cnode (2 bits); e[2] = ep",
        "c { 1: e[1..2] }",
        "",
        6,
        "e",
        0,
        "`e[2]` is past the end of the array (length 2)",
    );
    one(
        &format!("{THREAD}; d[2] = cnode (2 bits)"),
        "t { cspace: d[]; vspace: tv }",
        "",
        6,
        "d",
        0,
        "a TCB slot is one object, but `d` names 2",
    );
}

// ---- slots ----

#[test]
fn slot_errors() {
    one(
        "e = ep; f = ep",
        "e { 0: f }",
        "",
        6,
        "0",
        0,
        "`e` is an endpoint, which holds no caps",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { cspace: e }",
        "",
        6,
        "cspace",
        0,
        "`cspace` is a TCB slot, but `c` is a CNode",
    );
    one(
        THREAD,
        "t { cspace: tc; vspace: tv; reply_slot: tc }",
        "",
        6,
        "reply_slot",
        0,
        "unknown slot `reply_slot` (TCB slots: cspace, vspace, ipc_buffer_slot)",
    );
    one(
        THREAD,
        "t { cspace: tc; vspace: tv; 3: tc }",
        "",
        6,
        "3",
        0,
        "TCB slots are named: cspace, vspace, ipc_buffer_slot",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 4: e }",
        "",
        6,
        "4",
        0,
        "slot 4 is outside `c`, which has 4 slots",
    );
    one(
        "c = cnode (2 bits); e[3] = ep",
        "c { 2: e[] }",
        "",
        6,
        "2",
        0,
        "slot 4 is outside `c`, which has 4 slots",
    );
    one(
        "p = pt; f = frame (4k)",
        "p { 512: f (R) }",
        "",
        6,
        "512",
        0,
        "slot 512 is outside `p`, which has 512 slots",
    );
    one(
        "r = pml4; d = pdpt",
        "r { 256: d }",
        "",
        6,
        "256",
        0,
        "PML4 slot 256 is seL4's own entry (0xffff800000000000..0xffff808000000000): a user may map every slot but 256",
    );
    // A run of slots across seL4's entry names it.
    one(
        "r = pml4; d[3] = pdpt",
        "r { 255: d[] }",
        "",
        6,
        "255",
        0,
        "PML4 slot 256 is seL4's own entry (0xffff800000000000..0xffff808000000000): a user may map every slot but 256",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 1: e; 1: e }",
        "",
        6,
        "1",
        1,
        "slot 0x1 of `c` is already filled at 6:5",
    );
    one(
        THREAD,
        "t { cspace: tc; vspace: tv; cspace: tc }",
        "",
        6,
        "cspace",
        1,
        "slot cspace of `t` is already filled at 6:5",
    );
}

#[test]
fn mapping_errors() {
    one(
        "d = pd; f = frame (4k)",
        "d { 0: f (R) }",
        "",
        6,
        "f",
        0,
        "slot 0x0 of page directory `d` takes a page table or a 2M frame, not `f` (a 4k frame)",
    );
    one(
        "p = pt; f = frame (2M)",
        "p { 0: f (R) }",
        "",
        6,
        "f",
        0,
        "slot 0x0 of page table `p` takes a 4k frame, not `f` (a 2M frame)",
    );
    one(
        "r = pml4; d = pd",
        "r { 0: d }",
        "",
        6,
        "d",
        0,
        "slot 0x0 of PML4 `r` takes a PDPT, not `d` (a page directory)",
    );
    one(
        "q = pdpt; p = pt",
        "q { 0: p }",
        "",
        6,
        "p",
        0,
        "slot 0x0 of PDPT `q` takes a page directory (1 GiB pages are off), not `p` (a page table)",
    );
    one(
        THREAD,
        "t { cspace: tv; vspace: tv }",
        "",
        6,
        "tv",
        0,
        "slot cspace of TCB `t` takes a CNode, not `tv` (a PML4)",
    );
    one(
        THREAD,
        "t { cspace: tc; vspace: tc }",
        "",
        6,
        "tc",
        1,
        "slot vspace of TCB `t` takes a PML4, not `tc` (a CNode)",
    );
    one(
        &format!("{THREAD}; b = frame (2M)"),
        "t { cspace: tc; vspace: tv; ipc_buffer_slot: b }",
        "",
        6,
        "b }",
        0,
        "slot ipc_buffer_slot of TCB `t` takes a 4k frame, not `b` (a 2M frame)",
    );
    one(
        "a = asid_pool; e = ep",
        "a { 0: e }",
        "",
        6,
        "e",
        0,
        "slot 0x0 of ASID pool `a` takes a PML4, not `e` (an endpoint)",
    );
    one(
        "i = ioapic_irq (ioapic_pin: 1); e = ep",
        "i { 0: e }",
        "0: i",
        6,
        "e",
        0,
        "slot 0x0 of IRQ `i` takes a notification, not `e` (an endpoint)",
    );
    one(
        "d = pd; d2 = pd; p = pt",
        "d { 0: p }\nd2 { 1: p }",
        "",
        7,
        "p",
        0,
        "`p` is already mapped at 6:8: seL4 maps a paging structure once",
    );
    one(
        "p = pt; f = frame (4k)",
        "p { 0: f (W) }",
        "",
        6,
        "f",
        0,
        "frame `f` is mapped without `R`: x86_64 pages are always readable",
    );
}

// ---- cap parameters ----

#[test]
fn cap_parameter_errors() {
    one(
        "c = cnode (2 bits); n = notification",
        "c { 1: n (RG) }",
        "",
        6,
        "RG",
        0,
        "a cap to a notification cannot have right `G` (allowed: RW)",
    );
    one(
        "c = cnode (2 bits); d = cnode (2 bits)",
        "c { 1: d (R) }",
        "",
        6,
        "R",
        0,
        "a cap to a CNode cannot have right `R` (allowed: none)",
    );
    one(
        "c = cnode (2 bits); f = frame (4k)",
        "c { 1: f (badge: 1) }",
        "",
        6,
        "badge",
        0,
        "only endpoint and notification caps carry a badge, not a cap to a frame",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 1: e (badge: 0x10000000) }",
        "",
        6,
        "badge",
        0,
        "badge 0x10000000 is too large (at most 0xfffffff)",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 1: e (guard: 1) }",
        "",
        6,
        "guard",
        0,
        "only CNode caps have a guard, not a cap to an endpoint",
    );
    one(
        "c = cnode (2 bits)",
        "c { 1: c (guard: 4, guard_size: 2) }",
        "",
        6,
        "c",
        1,
        "guard 0x4 does not fit in 2 bits",
    );
    one(
        "c = cnode (2 bits)",
        "c { 1: c (guard_size: 63) }",
        "",
        6,
        "guard_size",
        0,
        "guard_size 63 + radix 2 of `c` is more than 64 bits",
    );
    one(
        "c = cnode (2 bits); e = ep",
        "c { 1: e (uncached) }",
        "",
        6,
        "uncached",
        0,
        "only frame caps are `cached` or `uncached`, not a cap to an endpoint",
    );
    one("c = cnode (2 bits); e = ep", "c { 1: e (masked: 1) }", "", 6, "masked", 0,
        "unknown cap parameter `masked` (known: rights, badge, guard, guard_size, cached, uncached)");
}

// ---- whole spec ----

#[test]
fn thread_and_irq_errors() {
    one(
        "t = tcb; tc = cnode (2 bits)",
        "t { cspace: tc }",
        "",
        3,
        "t",
        0,
        "TCB `t` has no `vspace`: every thread needs a CSpace and a VSpace",
    );
    one(
        "t = tcb; tv = pml4",
        "t { vspace: tv }",
        "",
        3,
        "t",
        0,
        "TCB `t` has no `cspace`: every thread needs a CSpace and a VSpace",
    );
    one(
        "i = ioapic_irq (ioapic_pin: 1)",
        "",
        "",
        3,
        "i",
        0,
        "IRQ `i` has no number in `irq maps`",
    );
    one(
        "i = ioapic_irq (ioapic_pin: 1)",
        "",
        "1: i; 2: i",
        9,
        "2",
        0,
        "IRQ `i` already has number 1",
    );
    one(
        "i = ioapic_irq (ioapic_pin: 1); j = ioapic_irq (ioapic_pin: 2)",
        "",
        "1: i; 1: j",
        9,
        "1",
        1,
        "IRQ number 1 is already given to `i`",
    );
    one(
        "e = ep",
        "",
        "1: e",
        9,
        "e",
        0,
        "`e` is an endpoint, not an IRQ",
    );
}

#[test]
fn ipc_buffer_must_be_mapped_where_the_thread_says() {
    let thread = "t = tcb (addr: 0x1000); tc = cnode (2 bits); tv = pml4; q = pdpt; d = pd; p = pt; b[2] = frame (4k)";
    let caps = "t { cspace: tc; vspace: tv; ipc_buffer_slot: b[0] (RW) }\ntv { 0: q }\nq { 0: d }\nd { 0: p }";
    // 0x1000 is PT slot 1.
    let source = spec(thread, &format!("{caps}\np {{ 1: b[0] (RW) }}"), "");
    assert_eq!(errors(&source), Vec::<String>::new());
    let other = format!("{caps}\np {{ 1: b[1] (RW) }}");
    let source = spec(thread, &other, "");
    assert_eq!(
        errors(&source),
        vec![at(
            &source,
            3,
            "t",
            0,
            "the IPC buffer of TCB `t` is at 0x1000, but its VSpace maps `b[1]` there, not `b[0]`"
        )]
    );
    let elsewhere = format!("{caps}\np {{ 2: b[0] (RW) }}");
    let source = spec(thread, &elsewhere, "");
    assert_eq!(
        errors(&source),
        vec![at(
            &source,
            3,
            "t",
            0,
            "the IPC buffer of TCB `t` is at 0x1000, but its VSpace maps nothing there, not `b[0]`"
        )]
    );
    // In PML4 entry 257 the address is the sign-extended one; its
    // non-canonical alias (bit 47 alone) maps nothing.
    let upper = "t { cspace: tc; vspace: tv; ipc_buffer_slot: b[0] (RW) }\ntv { 257: q }\nq { 0: d }\nd { 0: p }\np { 1: b[0] (RW) }";
    for (addr, mapped) in [("0xffff808000001000", true), ("0x808000001000", false)] {
        let thread = thread.replace("0x1000", addr);
        let source = spec(&thread, upper, "");
        let expected = if mapped {
            Vec::new()
        } else {
            vec![at(
                &source,
                3,
                "t",
                0,
                &format!("the IPC buffer of TCB `t` is at {addr}, but its VSpace maps nothing there, not `b[0]`"),
            )]
        };
        assert_eq!(errors(&source), expected, "{addr}");
    }
}
