//! The `parley` command's parts that tests reach: the terminal chat, and the
//! text it shares with the commands.
#![forbid(unsafe_code)]

pub mod text;
pub mod tui;
