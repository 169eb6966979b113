//! A TCP proxy on loopback that can cut every connection through it on demand,
//! so tests can take "the broker" away from one service without touching the
//! shared RabbitMQ that other tests use.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
}

struct ProxyState {
    enabled: bool,
    /// Cancelled to cut every connection opened while it was current.
    generation: CancellationToken,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(ProxyState {
            enabled: true,
            generation: CancellationToken::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, target, Arc::clone(&state), stop.clone()));
        Ok(Self { address, state, stop })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Cuts every open connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.enabled = false;
            state.generation.cancel();
            state.generation = CancellationToken::new();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.enabled = true;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut inbound, _)) = accepted else { continue };
        let generation = match state.lock() {
            Ok(state) if state.enabled => state.generation.clone(),
            _ => continue, // dropping `inbound` refuses the connection
        };
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                () = generation.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}
