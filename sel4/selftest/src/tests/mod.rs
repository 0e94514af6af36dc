//! One module per kernel feature; each `run` returns why it failed.

pub mod bootinfo;
pub mod fault;
pub mod irq;
pub mod layout;
pub mod memory;
pub mod no_syscalls;
pub mod registers;

/// A test's failure: what went wrong, for the log.
pub type Outcome = Result<(), Failure>;

/// A test, given the object allocator.
pub type Test<'a> = dyn Fn(&mut crate::objects::Objects) -> Outcome + 'a;

#[derive(Debug)]
pub enum Failure {
    Kernel(&'static str, previrt_sel4::Error),
    Check(&'static str),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Kernel(what, e) => write!(f, "{what}: {e}"),
            Failure::Check(what) => f.write_str(what),
        }
    }
}

/// Attaches what was being done to a kernel error.
pub trait Context<T> {
    fn doing(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, previrt_sel4::Error> {
    fn doing(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure::Kernel(what, e))
    }
}

pub fn check(condition: bool, what: &'static str) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(Failure::Check(what))
    }
}
