//! `socket-probe <path>`: connects to a Unix socket and exits 0, or prints the error and exits 1.
//! The security tests run it as another user.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: socket-probe <unix socket path>");
        std::process::exit(2);
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => println!("connected"),
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
