//! Address spaces: frames, the x86_64 paging structures, rights and
//! attributes.

use crate::cap::{Page, PageDirectory, PageTable, Pdpt, VSpace};
use crate::ipc;
use crate::sys::bitfield::{
    seL4_CapRights_capAllowGrant as GRANT, seL4_CapRights_capAllowRead as READ,
    seL4_CapRights_capAllowWrite as WRITE,
};
use crate::sys::invocation as label;
use crate::{Error, Word};

/// Capability rights (`seL4_CapRights`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapRights {
    pub read: bool,
    pub write: bool,
    pub grant: bool,
}

impl CapRights {
    pub const ALL: CapRights = CapRights {
        read: true,
        write: true,
        grant: true,
    };
    pub const READ_WRITE: CapRights = CapRights {
        read: true,
        write: true,
        grant: false,
    };
    pub const READ: CapRights = CapRights {
        read: true,
        write: false,
        grant: false,
    };
    pub const WRITE: CapRights = CapRights {
        read: false,
        write: true,
        grant: false,
    };

    pub fn word(self) -> Word {
        let w = READ.set(0, Word::from(self.read));
        let w = WRITE.set(w, Word::from(self.write));
        GRANT.set(w, Word::from(self.grant))
    }
}

/// x86 mapping attributes (`seL4_X86_VMAttributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmAttributes(pub Word);

impl VmAttributes {
    pub const DEFAULT: VmAttributes =
        VmAttributes(crate::sys::constants::seL4_X86_Default_VMAttributes);
}

impl Page {
    pub fn map(
        self,
        vspace: VSpace,
        vaddr: Word,
        rights: CapRights,
        attr: VmAttributes,
    ) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86PageMap,
            &[vspace.0],
            &[vaddr, rights.word(), attr.0],
        )
        .map(drop)
    }

    pub fn unmap(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::X86PageUnmap, &[], &[]).map(drop)
    }

    /// The frame's physical address.
    pub fn address(self) -> Result<Word, Error> {
        ipc::invoke(self.0, label::X86PageGetAddress, &[], &[]).map(|m| m.mr[0])
    }
}

impl PageTable {
    pub fn map(self, vspace: VSpace, vaddr: Word, attr: VmAttributes) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86PageTableMap,
            &[vspace.0],
            &[vaddr, attr.0],
        )
        .map(drop)
    }

    pub fn unmap(self) -> Result<(), Error> {
        ipc::invoke(self.0, label::X86PageTableUnmap, &[], &[]).map(drop)
    }
}

impl PageDirectory {
    pub fn map(self, vspace: VSpace, vaddr: Word, attr: VmAttributes) -> Result<(), Error> {
        ipc::invoke(
            self.0,
            label::X86PageDirectoryMap,
            &[vspace.0],
            &[vaddr, attr.0],
        )
        .map(drop)
    }
}

impl Pdpt {
    pub fn map(self, vspace: VSpace, vaddr: Word, attr: VmAttributes) -> Result<(), Error> {
        ipc::invoke(self.0, label::X86PDPTMap, &[vspace.0], &[vaddr, attr.0]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_words_match_the_bitfield_layout() {
        // seL4 5.0.0: grant bit 2, read bit 1, write bit 0.
        assert_eq!(CapRights::ALL.word(), 0b111);
        assert_eq!(CapRights::READ.word(), 0b010);
        assert_eq!(CapRights::WRITE.word(), 0b001);
    }
}

/// A paging structure the caller must create for `map_creating_tables`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingLevel {
    PageTable,
    PageDirectory,
    Pdpt,
}

impl PagingLevel {
    /// The kernel object type to retype for this level.
    pub fn object_type(self) -> Word {
        use crate::sys::constants as c;
        match self {
            PagingLevel::PageTable => c::seL4_X86_PageTableObject,
            PagingLevel::PageDirectory => c::seL4_X86_PageDirectoryObject,
            PagingLevel::Pdpt => c::seL4_X86_PDPTObject,
        }
    }
}

/// Maps the 4 KiB `page` at `vaddr` in `vspace`, creating the page table,
/// page directory and PDPT that are missing; `create` makes an object of the
/// given level and returns its capability address.
pub fn map_creating_tables<E: From<Error>>(
    page: Page,
    vspace: VSpace,
    vaddr: Word,
    rights: CapRights,
    attr: VmAttributes,
    create: &mut dyn FnMut(PagingLevel) -> Result<crate::CPtr, E>,
) -> Result<(), E> {
    match page.map(vspace, vaddr, rights, attr) {
        Err(Error::FailedLookup) => {}
        other => return other.map_err(E::from),
    }
    let pt = PageTable(create(PagingLevel::PageTable)?);
    match pt.map(vspace, vaddr, attr) {
        Err(Error::FailedLookup) => {
            let pd = PageDirectory(create(PagingLevel::PageDirectory)?);
            match pd.map(vspace, vaddr, attr) {
                Err(Error::FailedLookup) => {
                    let pdpt = Pdpt(create(PagingLevel::Pdpt)?);
                    pdpt.map(vspace, vaddr, attr)?;
                    pd.map(vspace, vaddr, attr)?;
                }
                other => other?,
            }
            pt.map(vspace, vaddr, attr)?;
        }
        other => other?,
    }
    page.map(vspace, vaddr, rights, attr).map_err(E::from)
}
