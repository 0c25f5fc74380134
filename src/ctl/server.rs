//! The control socket: one thread accepts, one thread per client answers
//! one JSON request per line. Only the daemon's user and root are served.

use super::protocol::{response, Request, MAX_REQUEST};
use super::sys;
use crate::service::ServiceThread;
use serde_json::Value;
use std::fs::Permissions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What answers requests: the daemon, or a test double.
pub trait Backend: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Result<Value, String>;
}

/// Clients served at once; more are told to retry.
const MAX_CLIENTS: usize = 32;
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// A client that stops reading its answers is dropped after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that sends nothing for this long gives its slot back.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The socket file, removed on drop if it is still the one we created
/// (never another daemon's).
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound control socket, not yet answering (connections wait in the backlog).
pub struct Listener {
    listener: UnixListener,
    file: SocketFile,
}

/// Refuses a live daemon's socket and anything that is not a socket;
/// removes a dead daemon's socket.
fn clear_stale(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot use {shown}: {e}")),
        Ok(m) if !m.file_type().is_socket() => Err(format!(
            "{shown} exists and is not a socket: not replacing it"
        )),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(format!(
                "another ipoibd is already serving {shown}: stop it or choose another --socket"
            )),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))?;
                tracing::info!("replaced the stale control socket {shown}");
                Ok(())
            }
            Err(e) => Err(format!("cannot check the existing socket {shown}: {e}")),
        },
    }
}

impl Listener {
    pub fn bind(path: &Path) -> Result<Listener, String> {
        let shown = path.display();
        clear_stale(path)?;
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot create the control socket {shown}: {e}"))?;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| format!("cannot read back the control socket {shown}: {e}"))?;
        let file = SocketFile {
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        };
        // Before the first accept. Whatever the umask let through meanwhile
        // is caught by the peer credential check on every connection.
        std::fs::set_permissions(path, Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make {shown} private (0600): {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("control socket {shown}: {e}"))?;
        Ok(Listener { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Starts answering with `backend`.
    pub fn serve(self, backend: Arc<dyn Backend>) -> Result<Server, String> {
        let Listener { listener, file } = self;
        let service =
            ServiceThread::spawn("ctl", move |stop| accept_loop(&listener, &backend, &stop))
                .map_err(|e| format!("cannot start the control socket thread: {e}"))?;
        Ok(Server {
            service,
            _file: file,
        })
    }
}

/// A serving control socket; stopping (or dropping) it waits for its
/// threads, then removes the socket file (fields drop in this order).
pub struct Server {
    service: ServiceThread,
    _file: SocketFile,
}

impl Server {
    pub fn stop(self) {
        self.service.stop();
    }
}

fn accept_loop(listener: &UnixListener, backend: &Arc<dyn Backend>, stop: &Arc<AtomicBool>) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if !sys::wait_readable(listener, TICK) {
            clients.retain(|h| !h.is_finished());
            continue;
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                continue
            }
            Err(e) => {
                // Out of descriptors and the like: do not spin on it.
                tracing::warn!("control socket: accept failed: {e}");
                std::thread::sleep(TICK);
                continue;
            }
        };
        clients.retain(|h| !h.is_finished());
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if clients.len() >= MAX_CLIENTS {
            let msg = format!("too many clients ({MAX_CLIENTS}): try again");
            let _ = send(&stream, &response(Err(msg)));
            continue;
        }
        let (backend, stop) = (backend.clone(), stop.clone());
        match std::thread::Builder::new()
            .name("ctl-client".into())
            .spawn(move || serve_client(stream, &*backend, &stop))
        {
            Ok(h) => clients.push(h),
            Err(e) => tracing::warn!("control socket: cannot start a client thread: {e}"),
        }
    }
    for h in clients {
        let _ = h.join();
    }
}

fn send(mut stream: &UnixStream, line: &str) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    stream.write_all(&out)
}

/// Only the daemon's own user and root may drive it.
fn authorize(stream: &UnixStream) -> Result<(), String> {
    let me = sys::euid();
    match sys::peer_uid(stream) {
        Ok(uid) if uid == me || uid == 0 => Ok(()),
        Ok(uid) => Err(format!(
            "permission denied: uid {uid} may not use this socket (only uid {me} and root)"
        )),
        Err(e) => Err(format!(
            "permission denied: cannot read the peer's credentials: {e}"
        )),
    }
}

fn serve_client(mut stream: UnixStream, backend: &dyn Backend, stop: &AtomicBool) {
    if let Err(e) = authorize(&stream) {
        let _ = send(&stream, &response(Err(e)));
        return;
    }
    let _ = stream.set_read_timeout(Some(TICK));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last_heard = Instant::now();
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if !answer(&stream, &line, backend) {
                return;
            }
        }
        if buf.len() > MAX_REQUEST {
            let msg = format!("request longer than {MAX_REQUEST} bytes");
            let _ = send(&stream, &response(Err(msg)));
            return;
        }
        if stop.load(Ordering::Relaxed) || last_heard.elapsed() > IDLE_TIMEOUT {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                // A last request without its newline still gets an answer.
                let _ = answer(&stream, &buf, backend);
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last_heard = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// Answers one line; false when the client is gone.
fn answer(stream: &UnixStream, line: &[u8], backend: &dyn Backend) -> bool {
    let line = line.trim_ascii();
    if line.is_empty() {
        return true;
    }
    let result = Request::parse(line).and_then(|req| {
        // Who asked what, for an operator tracing a problem (log.level = "debug").
        tracing::debug!(event = "control_request", request = ?req, "control socket request");
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.handle(req)))
            .unwrap_or_else(|_| Err("internal error while answering".into()))
    });
    send(stream, &response(result)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    struct Echo;
    impl Backend for Echo {
        fn handle(&self, req: Request) -> Result<Value, String> {
            match req {
                Request::Status => Ok(serde_json::json!("up")),
                _ => Err("not here".into()),
            }
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ipoib-ctl-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ask(path: &Path, lines: &str) -> Vec<String> {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(lines.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        BufReader::new(s).lines().map(Result::unwrap).collect()
    }

    #[test]
    fn answers_each_line_and_survives_garbage() {
        let dir = temp_dir("lines");
        let path = dir.join("s.sock");
        let server = Listener::bind(&path)
            .unwrap()
            .serve(Arc::new(Echo))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let got = ask(
            &path,
            "{\"cmd\":\"status\"}\n\n{nope\n{\"cmd\":\"stats\"}\n{\"cmd\":\"status\"}",
        );
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], "{\"data\":\"up\",\"ok\":true}");
        assert!(got[1].contains("malformed request"), "{}", got[1]);
        assert!(got[2].contains("not here"), "{}", got[2]);
        assert_eq!(got[3], got[0]);
        let long = "x".repeat(MAX_REQUEST + 10);
        let got = ask(&path, &long);
        assert!(got[0].contains("longer than"), "{got:?}");
        assert_eq!(ask(&path, "{\"cmd\":\"status\"}\n").len(), 1);
        server.stop();
        assert!(!path.exists(), "socket file removed on stop");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stale_socket_replaced_live_one_refused() {
        let dir = temp_dir("stale");
        let path = dir.join("s.sock");
        // A socket file nobody listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = Listener::bind(&path)
            .unwrap()
            .serve(Arc::new(Echo))
            .unwrap();
        let err = Listener::bind(&path).err().unwrap();
        assert!(err.contains("already serving"), "{err}");
        // The refused attempt left the live socket alone.
        assert_eq!(ask(&path, "{\"cmd\":\"status\"}\n").len(), 1);
        server.stop();
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = Listener::bind(&file).err().unwrap();
        assert!(err.contains("not a socket"), "{err}");
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
