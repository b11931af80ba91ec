//! `tcp-relay LISTEN=TARGET...`: relays every TCP connection made to LISTEN (an address, port
//! 0 for any) to TARGET, both ways, until either side closes. Prints one line `LISTEN BOUND`
//! per listener once all are bound, then runs until killed. The network-cut test runs one
//! inside a network namespace (where the cluster's 127.0.0.1 addresses mean nothing) and one
//! on the host side of its veth link: a process is the only way to hold a socket in the
//! namespace without unsafe `setns` calls.

use anyhow::Context;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};

fn main() -> anyhow::Result<()> {
    let usage = "usage: tcp-relay LISTEN=TARGET... (e.g. 127.0.0.1:9866=10.0.0.1:40001)";
    let pairs: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!pairs.is_empty(), "{usage}");
    let mut listeners = Vec::new();
    for pair in &pairs {
        let (listen, target) = pair
            .split_once('=')
            .with_context(|| format!("'{pair}' is not LISTEN=TARGET ({usage})"))?;
        let listener =
            TcpListener::bind(listen).with_context(|| format!("binding {listen} ({usage})"))?;
        listeners.push((listen.to_string(), listener, target.to_string()));
    }
    let mut stdout = std::io::stdout().lock();
    for (listen, listener, _) in &listeners {
        writeln!(stdout, "{listen} {}", listener.local_addr()?)?;
    }
    stdout.flush()?;
    drop(stdout);
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|(_, listener, target)| std::thread::spawn(move || accept(listener, &target)))
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Relays each accepted connection on threads of its own; a target that refuses closes the
/// accepted connection, as the target itself would have.
fn accept(listener: TcpListener, target: &str) {
    for client in listener.incoming().flatten() {
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pipe(client, server));
        std::thread::spawn(move || pipe(server2, client2));
    }
}

/// Copies `from` to `to` until `from` ends, then passes the end on.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
