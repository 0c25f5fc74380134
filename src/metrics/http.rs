//! Just enough HTTP/1.x for a scrape, sans-IO: a request head in, a whole
//! response out.

/// Longest request head read; longer ones are answered 431.
pub const MAX_HEAD: usize = 8192;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The head ends with an empty line.
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

fn reply(status: &str, extra: &str, content_type: &str, body: &str, with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// The response to `head`; `page` is only called for a scrape.
pub fn respond(head: &[u8], page: impl FnOnce() -> String) -> Vec<u8> {
    let text = "text/plain; charset=utf-8";
    if !head_complete(head) {
        if head.len() >= MAX_HEAD {
            return reply(
                "431 Request Header Fields Too Large",
                "",
                text,
                "request head too large\n",
                true,
            );
        }
        return reply("400 Bad Request", "", text, "incomplete request\n", true);
    }
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut parts = first.trim_end().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return reply(
            "400 Bad Request",
            "",
            text,
            "malformed request line\n",
            true,
        );
    };
    if !version.starts_with("HTTP/1.") {
        return reply("400 Bad Request", "", text, "expected HTTP/1.x\n", true);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return reply(
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            text,
            "only GET and HEAD\n",
            true,
        );
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return reply(
            "404 Not Found",
            "",
            text,
            "not found: the metrics are at /metrics\n",
            !head_only,
        );
    }
    reply("200 OK", "", CONTENT_TYPE, &page(), !head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(r: &[u8]) -> String {
        let t = String::from_utf8_lossy(r);
        t.lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn scrape_and_refusals() {
        let ok = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "a 1\n".into()
        });
        let t = String::from_utf8(ok).unwrap();
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains("Content-Type: text/plain; version=0.0.4"), "{t}");
        assert!(
            t.contains("Content-Length: 4\r\n") && t.ends_with("\r\n\r\na 1\n"),
            "{t}"
        );
        let head = respond(b"HEAD /metrics?x=1 HTTP/1.0\n\n", || "a 1\n".into());
        assert!(String::from_utf8(head).unwrap().ends_with("\r\n\r\n"));
        let never = || -> String { panic!("no page for a refused request") };
        for (req, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"GET /metrics\r\n\r\n", "400"),
            (b"GET /metrics SPDY/3\r\n\r\n", "400"),
            (b"GET /metrics HTTP/1.1\r\n", "400"),
            (b"\xff\xfe\r\n\r\n", "400"),
            (b"", "400"),
        ] {
            let r = respond(req, never);
            assert!(status_of(&r).contains(want), "{req:?}: {}", status_of(&r));
        }
        let big = vec![b'a'; MAX_HEAD];
        assert!(status_of(&respond(&big, never)).contains("431"));
    }
}
