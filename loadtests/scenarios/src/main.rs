//! Load scenarios against a running modelgate (written next).

fn main() {}
