//! An address space as a set of 4 KiB page mappings, and the paging
//! structures (PDPTs, page directories, page tables) that make it.

use std::collections::{BTreeMap, BTreeSet};

use super::{cap, BuildError, Builder, ObjectId};
use crate::model::{ObjectKind, Rights, Slot};
use crate::objects::{is_canonical, is_user_address, FrameSize, PAGE_BITS, PAGING_ENTRIES};

/// The index bits of one paging level.
const LEVEL_BITS: u32 = 9;
const PAGE: u64 = 1 << PAGE_BITS;

/// The 4 KiB pages of one VSpace, under its PML4 `NAME_pml4`. Map every
/// page with [`VSpace::map`], then [`VSpace::finish`] declares the paging
/// structures the pages need, as arrays `NAME_pdpt`, `NAME_pd`, `NAME_pt`
/// (only where they map something), and fills every entry.
#[derive(Clone, Debug)]
pub struct VSpace {
    name: String,
    pml4: ObjectId,
    /// Page address → (frame, rights).
    pages: BTreeMap<u64, (ObjectId, Rights)>,
}

impl VSpace {
    /// Declares `NAME_pml4`, an empty VSpace.
    pub fn new(b: &mut Builder, name: &str) -> Result<VSpace, BuildError> {
        let pml4 = b.object(&format!("{name}_pml4"), ObjectKind::Pml4)?;
        Ok(VSpace {
            name: name.to_string(),
            pml4,
            pages: BTreeMap::new(),
        })
    }

    /// Its root, for a TCB's `vspace` or a cap to it.
    pub fn pml4(&self) -> ObjectId {
        self.pml4
    }

    /// Maps the 4 KiB frame `frame` at `vaddr` with `rights`: `vaddr` must be
    /// page-aligned, canonical, outside seL4's own PML4 entry (256) and not
    /// mapped yet.
    pub fn map(&mut self, vaddr: u64, frame: ObjectId, rights: Rights) -> Result<(), BuildError> {
        let bad = |why| BuildError::BadPageAddress {
            name: self.name.clone(),
            vaddr,
            why,
        };
        if vaddr % PAGE != 0 {
            return Err(bad("not page-aligned"));
        }
        if !is_canonical(vaddr) {
            return Err(bad("not canonical (bits 47 to 63 differ)"));
        }
        if !is_user_address(vaddr) {
            return Err(bad(
                "in seL4's own PML4 entry 256 (0xffff800000000000..0xffff808000000000)",
            ));
        }
        if self.pages.contains_key(&vaddr) {
            return Err(BuildError::Overlap {
                name: self.name.clone(),
                vaddr,
            });
        }
        self.pages.insert(vaddr, (frame, rights));
        Ok(())
    }

    /// Declares the paging structures and fills every entry. Every mapped
    /// object must be a 4 KiB frame of `b`.
    pub fn finish(self, b: &mut Builder) -> Result<(), BuildError> {
        for &(frame, _) in self.pages.values() {
            if !matches!(
                b.kind(frame)?,
                ObjectKind::Frame {
                    size: FrameSize::Small,
                    ..
                }
            ) {
                return Err(BuildError::WrongType {
                    object: b.name(frame)?,
                    is: b.kind(frame)?.object_type().with_article(),
                    expected: "a 4K frame",
                });
            }
        }
        // Each structure is named by the address bits above what it maps:
        // a PDPT covers 512 GiB (bits 39 up), a PD 1 GiB, a PT 2 MiB.
        let shift = |level: u32| u32::from(PAGE_BITS) + LEVEL_BITS * level;
        let keys = |level: u32| -> BTreeSet<u64> {
            self.pages.keys().map(|v| v >> shift(level)).collect()
        };
        let (pdpts, pds, pts) = (keys(3), keys(2), keys(1));
        let prefix = &self.name;
        let declare = |b: &mut Builder, suffix: &str, set: &BTreeSet<u64>, kind: ObjectKind| {
            let array = b.array(&format!("{prefix}_{suffix}"), set.len() as u32, kind)?;
            Ok::<_, BuildError>(
                set.iter()
                    .copied()
                    .zip(array.iter())
                    .collect::<BTreeMap<u64, ObjectId>>(),
            )
        };
        let pdpt_of = declare(b, "pdpt", &pdpts, ObjectKind::Pdpt)?;
        let pd_of = declare(b, "pd", &pds, ObjectKind::PageDirectory)?;
        let pt_of = declare(b, "pt", &pts, ObjectKind::PageTable)?;
        let entry = |key: u64| Slot::Index(key & (PAGING_ENTRIES - 1));
        for (&key, &pdpt) in &pdpt_of {
            b.cap(self.pml4, entry(key), cap(pdpt, Rights::NONE))?;
        }
        // A structure's parent is the one whose key is its own key without
        // its lowest 9 bits; every parent exists, since the keys came from
        // the same pages.
        let link = |b: &mut Builder,
                    children: &BTreeMap<u64, ObjectId>,
                    parents: &BTreeMap<u64, ObjectId>| {
            for (&key, &child) in children {
                if let Some(&parent) = parents.get(&(key >> LEVEL_BITS)) {
                    b.cap(parent, entry(key), cap(child, Rights::NONE))?;
                }
            }
            Ok::<(), BuildError>(())
        };
        link(b, &pd_of, &pdpt_of)?;
        link(b, &pt_of, &pd_of)?;
        for (&vaddr, &(frame, rights)) in &self.pages {
            if let Some(&pt) = pt_of.get(&(vaddr >> shift(1))) {
                b.cap(pt, entry(vaddr >> PAGE_BITS), cap(frame, rights))?;
            }
        }
        Ok(())
    }
}
