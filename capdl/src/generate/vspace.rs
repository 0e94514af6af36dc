//! An address space as a set of page mappings, and the paging structures
//! (PDPTs, page directories, page tables) that make it.

use std::collections::{BTreeMap, BTreeSet};

use super::builder::{cap, Builder};
use crate::model::{ObjectKind, Rights, Slot};
use crate::objects::{PAGE_BITS, PAGING_ENTRIES};

/// The index bits of one paging level.
const LEVEL_BITS: u32 = 9;

/// 4 KiB pages of one VSpace: page address → (frame, rights).
#[derive(Debug, Default)]
pub(crate) struct Pages {
    pages: BTreeMap<u64, (u32, Rights)>,
}

impl Pages {
    /// Maps `frame` at the page-aligned `vaddr`; false if something already
    /// is there.
    pub(crate) fn map(&mut self, vaddr: u64, frame: u32, rights: Rights) -> bool {
        self.pages.insert(vaddr, (frame, rights)).is_none()
    }

    /// Declares the paging structures under `pml4` that the pages need, as
    /// arrays `PREFIX_pdpt`, `PREFIX_pd` and `PREFIX_pt` (each created only
    /// where it maps something), and fills every entry.
    pub(crate) fn build(&self, b: &mut Builder, prefix: &str, pml4: u32) {
        // Each structure is named by the address bits above what it maps:
        // a PDPT covers 512 GiB (bits 39 up), a PD 1 GiB, a PT 2 MiB.
        let shift = |level: u32| u32::from(PAGE_BITS) + LEVEL_BITS * level;
        let keys = |level: u32| -> BTreeSet<u64> {
            self.pages.keys().map(|v| v >> shift(level)).collect()
        };
        let (pdpts, pds, pts) = (keys(3), keys(2), keys(1));
        let declare = |b: &mut Builder, suffix: &str, set: &BTreeSet<u64>, kind: ObjectKind| {
            let first = b.array(&format!("{prefix}_{suffix}"), set.len() as u32, kind);
            set.iter()
                .enumerate()
                .map(|(k, key)| (*key, first + k as u32))
                .collect::<BTreeMap<u64, u32>>()
        };
        let pdpt_of = declare(b, "pdpt", &pdpts, ObjectKind::Pdpt);
        let pd_of = declare(b, "pd", &pds, ObjectKind::PageDirectory);
        let pt_of = declare(b, "pt", &pts, ObjectKind::PageTable);
        let entry = |key: u64| Slot::Index(key & (PAGING_ENTRIES - 1));
        for (&key, &pdpt) in &pdpt_of {
            b.cap(pml4, entry(key), cap(pdpt, Rights::NONE));
        }
        // A structure's parent is the one whose key is its own key without
        // its lowest 9 bits; every parent exists, since the keys came from
        // the same pages.
        let link =
            |b: &mut Builder, children: &BTreeMap<u64, u32>, parents: &BTreeMap<u64, u32>| {
                for (&key, &child) in children {
                    if let Some(&parent) = parents.get(&(key >> LEVEL_BITS)) {
                        b.cap(parent, entry(key), cap(child, Rights::NONE));
                    }
                }
            };
        link(b, &pd_of, &pdpt_of);
        link(b, &pt_of, &pd_of);
        for (&vaddr, &(frame, rights)) in &self.pages {
            if let Some(&pt) = pt_of.get(&(vaddr >> shift(1))) {
                b.cap(pt, entry(vaddr >> PAGE_BITS), cap(frame, rights));
            }
        }
    }
}
