//! The optional Prometheus endpoint (`[metrics] listen`): one small thread
//! serves `GET /metrics` over plain HTTP/1.x, one request per connection.
//! A scrape reads the same counters `ipoibctl stats` reads; the datapath
//! does nothing for it.

pub mod exposition;
mod http;

use crate::ctl::sys;
use crate::service::ServiceThread;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the page is made of, read at each scrape.
pub type Source = Arc<dyn Fn() -> String + Send + Sync>;

/// How often the thread looks at its stop flag.
const TICK: Duration = Duration::from_millis(100);
/// A client gets this long to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct MetricsServer {
    addr: SocketAddr,
    service: ServiceThread,
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port) and starts serving.
    pub fn start(addr: SocketAddr, source: Source) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("metrics.listen: cannot listen on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("metrics.listen {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("metrics.listen {addr}: {e}"))?;
        let service = ServiceThread::spawn("metrics", move |stop| serve(&listener, &source, &stop))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        Ok(MetricsServer { addr, service })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(self) {
        self.service.stop();
    }
}

fn serve(listener: &TcpListener, source: &Source, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if !sys::wait_readable(listener, TICK) {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => answer(stream, source),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
}

/// Reads one request head (bounded in size and time) and answers it.
fn answer(mut stream: TcpStream, source: &Source) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !http::head_complete(&head) && head.len() < http::MAX_HEAD && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let reply = http::respond(&head, || source());
    let _ = stream.write_all(&reply);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
