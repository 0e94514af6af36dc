//! The real-world corpus: gcc's assembly of a kernel through the pass, the
//! assembler and the audit.
//!
//! `AFTERBURN_CORPUS=/path/to/kernel_all.s cargo test -p afterburner --test
//! corpus` checks that file and FAILS if it is missing, unreadable, rejected
//! by the pass or the assembler, or audits with violations other than
//! instructions hidden in `.byte`. Without the variable, the test builds a
//! small corpus itself with `gcc -S` from C with inline assembly.

use afterburner::audit::Rule;
use afterburner::corpus::check_assembly_file;
use std::path::PathBuf;

const C_SOURCE: &str = r#"
struct dtr { unsigned short limit; unsigned long base; } __attribute__((packed));
static inline void outb(unsigned char v, unsigned short port) { asm volatile("outb %0,%1" :: "a"(v), "Nd"(port)); }
static inline unsigned char inb(unsigned short port) { unsigned char v; asm volatile("inb %1,%0" : "=a"(v) : "Nd"(port)); return v; }
static inline void write_cr3(unsigned long v) { asm volatile("movq %0,%%cr3" :: "r"(v) : "memory"); }
static inline unsigned long read_cr2(void) { unsigned long v; asm volatile("mov %%cr2,%0" : "=r"(v)); return v; }
static inline unsigned long flags(void) { return __builtin_ia32_readeflags_u64(); }
void serial_puts(const char *s) { while (*s) { while (!(inb(0x3fd) & 0x20)) {} outb(*s++, 0x3f8); } }
void load(struct dtr *g, struct dtr *i) { asm volatile("lgdt %0" :: "m"(*g)); asm volatile("lidt %0" :: "m"(*i)); asm volatile("ltr %w0" :: "r"(0x28)); }
void flush(unsigned long a) { asm volatile("invlpg (%0)" :: "r"(a) : "memory"); write_cr3(read_cr2()); }
unsigned long irqsave(void) { unsigned long f = flags(); asm volatile("cli" ::: "memory"); return f; }
void idle(void) { asm volatile("sti; hlt" ::: "memory"); }
void swapgs_hidden(void) { asm volatile(".byte 0x0f, 0x01, 0xf8"); }
const char *msg = "cli; sti; outb %al,%dx";
"#;

fn generated_corpus(dir: &std::path::Path) -> PathBuf {
    let c = dir.join("corpus.c");
    let s = dir.join("corpus.s");
    std::fs::write(&c, C_SOURCE).unwrap();
    let st = std::process::Command::new("gcc")
        .args([
            "-O2",
            "-g",
            "-fno-pic",
            "-mcmodel=kernel",
            "-ffreestanding",
            "-S",
            "-o",
        ])
        .arg(&s)
        .arg(&c)
        .status()
        .expect("gcc runs");
    assert!(st.success());
    s
}

#[test]
fn corpus_goes_through_pass_assembler_and_audit() {
    match std::env::var_os("AFTERBURN_CORPUS") {
        Some(path) => {
            let path = PathBuf::from(path);
            let summary = check_assembly_file(&path)
                .unwrap_or_else(|e| panic!("corpus {}: {e}", path.display()));
            println!(
                "corpus {}: {} bytes, {} sites, {} .byte statements in inline asm\n{}",
                path.display(),
                summary.input_bytes,
                summary.sites,
                summary.byte_statements_in_inline_asm,
                summary.report.to_text()
            );
            assert!(summary.sites > 0);
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let path = generated_corpus(dir.path());
            let summary = check_assembly_file(&path).unwrap_or_else(|e| panic!("{e}"));
            // outb, inb, lgdt, lidt, ltr, invlpg, mov to cr3, mov from cr2,
            // pushf (gcc's own), cli, sti;hlt: every one padded ...
            assert!(summary.sites >= 11, "{} sites", summary.sites);
            // ... and the swapgs written as .byte reported, exactly once.
            assert_eq!(summary.byte_statements_in_inline_asm, 1);
            assert_eq!(
                summary.report.violations.len(),
                1,
                "{}",
                summary.report.to_text()
            );
            assert_eq!(summary.report.violations[0].rule, Rule::Uncovered);
            assert_eq!(summary.report.violations[0].disassembly, "swapgs");
            assert!(summary.report.violations[0]
                .symbol
                .starts_with("swapgs_hidden"));
        }
    }
}

#[test]
fn a_bad_corpus_path_is_an_error() {
    let err = check_assembly_file(std::path::Path::new("/nonexistent/corpus.s")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/corpus.s"));
}
