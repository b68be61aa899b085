//! A bare actix-web server that answers every POST with a fixed JSON body (written next).

fn main() {}
