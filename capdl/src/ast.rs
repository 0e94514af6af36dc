//! The syntax tree: what the text says, with positions, before any name is
//! resolved. The validator turns it into a [`crate::spec::Spec`].

use crate::lexer::Pos;

/// A whole spec file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecAst {
    /// `arch NAME`, if the file has it.
    pub arch: Option<(String, Pos)>,
    /// Every object declaration, from every `objects` section, in order.
    pub objects: Vec<ObjectDecl>,
    /// Every cap block, from every `caps` section, in order.
    pub cap_blocks: Vec<CapBlock>,
    /// Every `irq maps` entry.
    pub irq_maps: Vec<IrqMapping>,
}

/// One element index or a range of them, as written in `name[...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAst {
    /// `n`
    Only(u128),
    /// `a..b` (inclusive)
    FromTo(u128, u128),
    /// `a..` (to the last element)
    From(u128),
    /// `..b` (from the first element)
    To(u128),
}

/// A reference to an object or to elements of an object array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRef {
    /// The name.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// `None`: no brackets. `Some([])`: `name[]`, every element.
    pub ranges: Option<Vec<RangeAst>>,
}

/// `name = type (params) { children }` or `name[N] = ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDecl {
    /// The declared name.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// `[N]`: an array of N objects.
    pub count: Option<(u128, Pos)>,
    /// The type keyword as written.
    pub type_name: String,
    /// Where the type keyword is.
    pub type_pos: Pos,
    /// The parameters in parentheses.
    pub params: Vec<ObjectParam>,
    /// The objects an untyped covers (only untypeds may have these).
    pub children: Vec<UntypedChild>,
    /// Where the `{` of the children is, if there is one.
    pub children_pos: Option<Pos>,
}

/// An object an untyped covers: declared in place or named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UntypedChild {
    /// `name = type ...` inside the untyped's braces.
    Decl(ObjectDecl),
    /// `name` or `name[range]` of an object declared elsewhere.
    Ref(NameRef),
}

/// A parameter of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectParam {
    /// Where it starts.
    pub pos: Pos,
    /// What it says.
    pub value: ObjectParamValue,
}

/// The forms an object parameter can take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectParamValue {
    /// `N bits`
    Bits(u128),
    /// `N k` or `N M`, in bytes.
    VmSize(u128),
    /// `key: number`
    Number(String, u128),
    /// `key: name` (`elf:`)
    Name(String, String),
    /// `init: [n, ...]`
    List(String, Vec<u128>),
    /// `ports: [a..b]`
    Ports(u128, u128),
    /// `fill: [{...}, ...]`
    Fill(Vec<FillAst>),
}

/// `{ dest_offset length CDL_FrameFill_FileData "file" file_offset }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillAst {
    /// Where the `{` is.
    pub pos: Pos,
    /// Offset in the frame.
    pub dest_offset: u128,
    /// Bytes to copy.
    pub length: u128,
    /// The file (an ELF image the loader carries).
    pub file: String,
    /// Offset in the file.
    pub file_offset: u128,
}

/// `holder { slot: cap ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapBlock {
    /// The object whose slots are filled (a range fills each element).
    pub holder: NameRef,
    /// The slots.
    pub entries: Vec<CapEntry>,
}

/// A slot as written: a number or a TCB slot's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotAst {
    /// A number.
    Index(u128),
    /// `cspace`, `vspace`, `ipc_buffer_slot`, ...
    Named(String),
}

/// `slot: target (params)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapEntry {
    /// The slot (the first, if the target names several objects).
    pub slot: SlotAst,
    /// Where the slot is.
    pub slot_pos: Pos,
    /// The object(s) the cap points to.
    pub target: NameRef,
    /// The cap's parameters.
    pub params: Vec<CapParam>,
}

/// A cap parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapParam {
    /// Where it starts.
    pub pos: Pos,
    /// What it says.
    pub value: CapParamValue,
}

/// The forms a cap parameter can take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapParamValue {
    /// Right letters, e.g. `RWG`.
    Rights(String),
    /// `key: number` (`badge`, `guard`, `guard_size`).
    Number(String, u128),
    /// A bare word (`cached`, `uncached`).
    Flag(String),
}

/// `irq: object` in `irq maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqMapping {
    /// The IRQ number (the loader passes it as the vector offset).
    pub irq: u128,
    /// Where the number is.
    pub pos: Pos,
    /// The IRQ object.
    pub target: NameRef,
}
