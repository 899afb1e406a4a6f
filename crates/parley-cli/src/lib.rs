//! The `parley` command's parts that tests reach: the terminal chat.
#![forbid(unsafe_code)]

pub mod tui;
