//! The client side: one request, one response.

use super::protocol::{parse_response, Request};
use super::sys;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Longer than the daemon's own wait for its control thread.
const ANSWER_WAIT: Duration = Duration::from_secs(40);

/// Connects to the daemon's socket, refusing one owned by another user:
/// in a shared directory such as /tmp it could be anyone's.
pub fn connect(path: &Path) -> Result<UnixStream, String> {
    let shown = path.display();
    if let Ok(m) = std::fs::metadata(path) {
        let me = sys::euid();
        if m.uid() != me && m.uid() != 0 {
            return Err(format!(
                "{shown} belongs to uid {}, not to uid {me} or root: not talking to it",
                m.uid()
            ));
        }
    }
    UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {shown}: {e} (is ipoibd running?)"))
}

/// Sends `req` and returns the response's data or its error.
pub fn request(path: &Path, req: &Request) -> Result<Value, String> {
    let mut stream = connect(path)?;
    let _ = stream.set_read_timeout(Some(ANSWER_WAIT));
    let _ = stream.set_write_timeout(Some(ANSWER_WAIT));
    let mut line = req.to_line();
    line.push('\n');
    // A refused client is told why and hung up on, maybe before the
    // request is written: the answer is still there to read.
    let sent = stream.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) => format!("cannot send to {}: {e}", path.display()),
            (_, Err(e)) => format!("no answer from {}: {e}", path.display()),
            _ => format!("{} closed the connection", path.display()),
        });
    }
    parse_response(answer.trim_end())
}
