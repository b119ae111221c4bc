//! `moat`: the Moat server and its command line.
//!
//! The server (WebSocket pub/sub, the write path, `moat serve --demo`) is the next piece of work
//! (issue 3); until it lands this binary says so instead of pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!("moat: the server is not built yet; `moat serve` lands with the server issue (#3).");
    eprintln!("      The core it will run on is in sqlite-ext; `scripts/test` exercises it.");
    std::process::ExitCode::from(2)
}
