//! A TCP proxy in front of the test PostgreSQL that counts its clients' round trips and connections, and can
//! freeze the connections it carries.
//!
//! Every exchange of the extended query protocol ends with a `Sync` message, and so does the liveness test sqlx
//! runs when a pool hands out or takes back a connection; so the `Sync`s a client sends are the round trips it
//! makes. For tests that a hot path costs one round trip per statement, that a client stops trying when the
//! server is away, and that it gives up on a connection that hangs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; it runs until the test's runtime ends.
pub struct RoundTrips {
    /// `url` with the proxy's address, and TLS off (the proxy reads the messages).
    pub url: String,
    syncs: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    /// Connections accepted before the latest [`RoundTrips::freeze`] stop carrying what their client sends.
    frozen_before: Arc<AtomicU64>,
}

/// SSLRequest and GSSENCRequest: untyped messages a client may send before its startup message.
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

impl RoundTrips {
    /// Starts a proxy to the server of `url` (`postgres://user@host:port/database[?…]`).
    pub async fn start(url: &str) -> RoundTrips {
        let (scheme_user, rest) = url.split_once('@').expect("a database url with user@host");
        let (upstream, path) = rest.split_once('/').expect("a database url with a database");
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let upstream = upstream.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (syncs, connections, frozen_before) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (counted, accepted, frozen) = (syncs.clone(), connections.clone(), frozen_before.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                let (upstream, counted, frozen) = (upstream.clone(), counted.clone(), frozen.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    proxy(client, server, counted, move || frozen.load(Ordering::SeqCst) >= number).await;
                });
            }
        });
        RoundTrips {
            url: format!("{scheme_user}@127.0.0.1:{port}/{path}?sslmode=disable"),
            syncs,
            connections,
            frozen_before,
        }
    }

    /// The connections clients have opened through the proxy so far (whether or not the server took them).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// From now on, the connections open now carry nothing more from their clients to the server (a hung network
    /// path: no error, no answer); connections opened later work.
    pub fn freeze(&self) {
        self.frozen_before.store(self.connections(), Ordering::SeqCst);
    }

    /// The round trips made so far, by every connection through the proxy.
    pub fn count(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }
}

async fn proxy(client: TcpStream, server: TcpStream, syncs: Arc<AtomicU64>, frozen: impl Fn() -> bool) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut pending = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        // Whole messages only: typed ones are a type byte and a length that counts itself; the ones before the
        // startup message are only a length and a code.
        loop {
            let header = if started { 5 } else { 4 };
            if pending.len() < header {
                break;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(pending[at..at + 4].try_into().expect("four bytes")) as usize;
            let total = at + length;
            if pending.len() < total {
                break;
            }
            if started {
                if pending[0] == b'S' {
                    syncs.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                let code = u32::from_be_bytes(pending[4..8].try_into().expect("four bytes"));
                started = !ENCRYPTION_REQUESTS.contains(&code);
            }
            pending.drain(..total);
        }
        if frozen() {
            // Hold the connection open and carry nothing, whatever more the client sends, until it gives up on it.
            while let Ok(1..) = client_read.read(&mut chunk).await {}
            break;
        }
        if server_write.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = server_write.shutdown().await;
    let _ = answers.await;
}
