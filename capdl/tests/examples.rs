//! Every spec under `examples/` is valid, prints canonically, and survives
//! print/parse and postcard round trips.

use std::fs;
use std::path::PathBuf;

fn examples() -> Vec<(PathBuf, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out: Vec<(PathBuf, String)> = fs::read_dir(&dir)
        .expect("examples folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "cdl"))
        .map(|path| {
            let text = fs::read_to_string(&path).expect("readable");
            (path, text)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn there_are_examples() {
    assert!(examples().len() >= 3);
}

#[test]
fn every_example_is_valid_and_round_trips() {
    for (path, source) in examples() {
        let spec = capdl::check(&source).unwrap_or_else(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("{}:\n{}", path.display(), text.join("\n"))
        });
        let printed = capdl::print::print(&spec);
        let reparsed = capdl::check(&printed).expect("canonical form parses");
        assert_eq!(
            reparsed,
            spec,
            "{}: print/parse changed the spec",
            path.display()
        );
        assert_eq!(
            capdl::print::print(&reparsed),
            printed,
            "canonical form is a fixed point"
        );
        let bytes = capdl::encode::encode(&spec).expect("encodes");
        assert_eq!(capdl::encode::decode(&bytes).expect("decodes"), spec);
    }
}

#[test]
fn examples_say_what_their_comments_say() {
    let by_name = |name: &str| {
        let (_, source) = examples()
            .into_iter()
            .find(|(p, _)| p.ends_with(name))
            .expect("example exists");
        capdl::check(&source).expect("valid")
    };
    use capdl::model::{ObjectKind, Slot};

    let two = by_name("two-threads.cdl");
    let tcbs = two
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Tcb(_)))
        .count();
    assert_eq!(tcbs, 2);
    let channel = two
        .objects
        .iter()
        .position(|o| o.name == "channel")
        .unwrap() as u32;
    let client_cnode = two
        .objects
        .iter()
        .find(|o| o.name == "client_cnode")
        .unwrap();
    let cap = client_cnode.slots[&Slot::Index(1)];
    assert_eq!(cap.target, channel);
    assert_eq!(cap.badge, 1);

    let vspace = by_name("vspace.cdl");
    let memory = vspace
        .objects
        .iter()
        .position(|o| o.name == "memory")
        .unwrap() as u32;
    let covered = vspace
        .objects
        .iter()
        .filter(|o| o.untyped == Some(memory))
        .count();
    assert_eq!(covered, 2 + 16 + 1 + 7 + 1 + 1);
    let low_pt = vspace.objects.iter().find(|o| o.name == "low_pt").unwrap();
    assert_eq!(low_pt.slots.len(), 16);

    let devices = by_name("devices.cdl");
    assert_eq!(
        devices.irqs.iter().map(|i| i.irq).collect::<Vec<_>>(),
        vec![0, 4]
    );
    let ports: Vec<(u16, u16)> = devices
        .objects
        .iter()
        .filter_map(|o| match o.kind {
            ObjectKind::IoPorts { first, last } => Some((first, last)),
            _ => None,
        })
        .collect();
    assert_eq!(ports, vec![(0x40, 0x43), (0x3f8, 0x3ff)]);
}

#[test]
fn the_example_in_the_language_docs_is_valid() {
    let docs =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/capdl.md"))
            .expect("docs/capdl.md");
    let start = docs
        .find("```\narch x86_64")
        .expect("an example spec in the docs")
        + 4;
    let end = start + docs[start..].find("```").expect("closed block");
    let spec = capdl::check(&docs[start..end]).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("docs example:\n{}", text.join("\n"))
    });
    assert_eq!(spec.objects.len(), 25);
}
