//! Word layouts and tag values from libsel4's bitfield specifications (the
//! `.bf` files the kernel's `bitfield_gen.py` compiles), after the C
//! preprocessor has applied the config.

use crate::preprocess::Preprocessor;
use crate::source::KernelSource;

pub struct Field {
    pub block: String,
    pub name: String,
    pub shift: u32,
    pub bits: u32,
}

pub struct Tag {
    pub union: String,
    pub name: String,
    pub value: u64,
}

pub struct Layouts {
    pub fields: Vec<Field>,
    pub tags: Vec<Tag>,
}

/// Blocks a user-level task encodes or decodes itself.
const BLOCKS: &[&str] = &[
    "seL4_MessageInfo",
    "seL4_CapRights",
    "seL4_PrioProps",
    "Guard",
    "Badge",
];

pub fn layouts(kernel: &KernelSource, cpp: &Preprocessor) -> Result<Layouts, String> {
    let mut layouts = Layouts {
        fields: Vec::new(),
        tags: Vec::new(),
    };
    // (file, the blocks taken from it, whether its tags are taken)
    let files: [(&str, &[&str], bool); 4] = [
        (
            "include/sel4/shared_types_64.bf",
            &["seL4_MessageInfo", "seL4_CapRights", "seL4_PrioProps"],
            true,
        ),
        ("include/sel4/types_64.bf", &["Guard", "Badge"], true),
        ("arch_include/x86/sel4/arch/shared_types.bf", &[], true),
        // The kernel's own: how CNode_Mint narrows an I/O port capability.
        (
            "../include/arch/x86/arch/64/mode/object/structures.bf",
            &["io_port_capdata"],
            false,
        ),
    ];
    for (file, blocks, tags) in files {
        let path = kernel.libsel4().join(file);
        let raw = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // `--` starts a comment in .bf files; drop comments before cpp sees them.
        let text: String = raw
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("#include <autoconf.h>\n{text}\n");
        let output = cpp.run("bitfield.bf.c", &text, false)?;
        parse(&output, blocks, tags, &mut layouts)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for block in BLOCKS {
        let block = qualified(block);
        if !layouts.fields.iter().any(|f| f.block == block) {
            return Err(format!("block {block} not found in libsel4's .bf files"));
        }
    }
    if !layouts.tags.iter().any(|t| t.union == "seL4_Fault") {
        return Err("tagged_union seL4_Fault not found".into());
    }
    Ok(layouts)
}

fn parse(
    text: &str,
    blocks: &[&str],
    take_tags: bool,
    layouts: &mut Layouts,
) -> Result<(), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "block" => {
                let name = words.get(i + 1).ok_or("block without a name")?;
                // `block name {`, or the kernel's `block name(fields, ...) {`.
                let name = name.split(['(', '{']).next().unwrap_or(name);
                i += 1;
                while i < words.len() && !words[i].contains('{') {
                    i += 1;
                }
                i += 1;
                let mut members = Vec::new(); // (name or None for padding, bits)
                while i < words.len() && !words[i].starts_with('}') {
                    match words[i] {
                        "padding" => {
                            members.push((None, number(words.get(i + 1))?));
                            i += 2;
                        }
                        "field" | "field_high" => {
                            let field = words.get(i + 1).ok_or("field without a name")?;
                            members.push((Some(field.to_string()), number(words.get(i + 2))?));
                            i += 3;
                        }
                        other => return Err(format!("block {name}: unexpected `{other}`")),
                    }
                }
                i += 1;
                if blocks.contains(&name) {
                    // Members are listed from the most significant bit down.
                    let total: u32 = members.iter().map(|(_, b)| b).sum();
                    let mut top = total;
                    for (field, bits) in members {
                        top -= bits;
                        if let Some(field) = field {
                            layouts.fields.push(Field {
                                block: qualified(name),
                                name: field,
                                shift: top,
                                bits,
                            });
                        }
                    }
                }
            }
            "tagged_union" => {
                let union = words
                    .get(i + 1)
                    .ok_or("tagged_union without a name")?
                    .to_string();
                i += 3; // name, tag field name
                while i < words.len() && !words[i].starts_with('}') {
                    if words[i] == "tag" && take_tags {
                        let name = words.get(i + 1).ok_or("tag without a name")?;
                        let value = number(words.get(i + 2))?;
                        layouts.tags.push(Tag {
                            union: union.clone(),
                            name: name.to_string(),
                            value: u64::from(value),
                        });
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn number(word: Option<&&str>) -> Result<u32, String> {
    let word = word.ok_or("number expected at end of file")?;
    word.parse()
        .map_err(|_| format!("`{word}` is not a number"))
}

/// The capability-data blocks (`Guard`, `Badge`) are members of the
/// `seL4_CapData` union; name them so.
fn qualified(block: &str) -> String {
    if block.starts_with("seL4_") || block.starts_with("io_port") {
        block.to_string()
    } else {
        format!("seL4_CapData_{block}")
    }
}
