//! Front ends that hand decisions to CD systems in their own formats.

pub mod shell;
