//! The wire protocol: one JSON object per line each way.
//!
//! Request: `{"cmd":"status"}`, `{"cmd":"flush","level":"light"}`,
//! `{"cmd":"join","interface":"ib0","group":"239.9.9.9"}`,
//! `{"cmd":"pcap_start","file":"/tmp/x.pcap","interface":"ib0","snaplen":128}`.
//! Response: `{"ok":true,"data":...}` or `{"ok":false,"error":"..."}`.

use serde_json::{json, Map, Value};
use std::net::IpAddr;

/// Longest request line accepted; longer ones close the connection.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How deep a flush goes (the kernel's IPOIB_FLUSH_* levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Light,
    Normal,
    Heavy,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "light" => Some(Level::Light),
            "normal" => Some(Level::Normal),
            "heavy" => Some(Level::Heavy),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Light => "light",
            Level::Normal => "normal",
            Level::Heavy => "heavy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Stats,
    Groups,
    Neigh,
    /// Every interface, or only `interface`.
    Flush {
        level: Level,
        interface: Option<String>,
    },
    Join {
        interface: String,
        group: IpAddr,
    },
    Leave {
        interface: String,
        group: IpAddr,
    },
    /// Re-read the configuration file, as SIGHUP does.
    Reload,
    /// Path records per interface.
    Paths,
    /// Capture every interface's frames (or only `interface`'s) to `file`,
    /// a path on the daemon's side.
    PcapStart {
        file: String,
        interface: Option<String>,
        snaplen: Option<u32>,
    },
    PcapStop,
}

/// Every command with the fields it takes (all others are errors).
const COMMANDS: [(&str, &[&str]); 11] = [
    ("status", &[]),
    ("stats", &[]),
    ("groups", &[]),
    ("neigh", &[]),
    ("flush", &["level", "interface"]),
    ("join", &["interface", "group"]),
    ("leave", &["interface", "group"]),
    ("reload", &[]),
    ("paths", &[]),
    ("pcap_start", &["file", "interface", "snaplen"]),
    ("pcap_stop", &[]),
];

fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field \"{name}\" must be a string")),
    }
}

fn required<'a>(obj: &'a Map<String, Value>, cmd: &str, name: &str) -> Result<&'a str, String> {
    field(obj, name)?.ok_or_else(|| format!("command \"{cmd}\" needs field \"{name}\""))
}

fn number(obj: &Map<String, Value>, name: &str) -> Result<Option<u32>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("field \"{name}\" must be a whole number")),
    }
}

fn group(obj: &Map<String, Value>, cmd: &str) -> Result<IpAddr, String> {
    let text = required(obj, cmd, "group")?;
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("group \"{text}\" is not an IP address"))?;
    if !ip.is_multicast() {
        return Err(format!("group {ip} is not a multicast address"));
    }
    Ok(ip)
}

impl Request {
    /// Parses one request line; the error is what the client is told.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let value: Value =
            serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
        let Value::Object(obj) = value else {
            return Err("malformed request: expected a JSON object".into());
        };
        let cmd = field(&obj, "cmd")?.ok_or("request has no \"cmd\" field")?;
        let Some((_, allowed)) = COMMANDS.iter().find(|(name, _)| *name == cmd) else {
            let names: Vec<&str> = COMMANDS.iter().map(|c| c.0).collect();
            return Err(format!(
                "unknown command \"{cmd}\" (expected one of: {})",
                names.join(", ")
            ));
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| *k != "cmd" && !allowed.contains(&k.as_str()))
        {
            return Err(format!("unknown field \"{extra}\" for command \"{cmd}\""));
        }
        Ok(match cmd {
            "status" => Request::Status,
            "stats" => Request::Stats,
            "groups" => Request::Groups,
            "neigh" => Request::Neigh,
            "reload" => Request::Reload,
            "paths" => Request::Paths,
            "flush" => {
                let text = required(&obj, cmd, "level")?;
                let level = Level::parse(text).ok_or_else(|| {
                    format!("unknown flush level \"{text}\" (expected light, normal or heavy)")
                })?;
                let interface = field(&obj, "interface")?.map(str::to_owned);
                Request::Flush { level, interface }
            }
            "join" => Request::Join {
                interface: required(&obj, cmd, "interface")?.to_owned(),
                group: group(&obj, cmd)?,
            },
            "leave" => Request::Leave {
                interface: required(&obj, cmd, "interface")?.to_owned(),
                group: group(&obj, cmd)?,
            },
            "pcap_start" => Request::PcapStart {
                file: required(&obj, cmd, "file")?.to_owned(),
                interface: field(&obj, "interface")?.map(str::to_owned),
                snaplen: number(&obj, "snaplen")?,
            },
            _ => Request::PcapStop,
        })
    }

    /// The request as the client sends it (one line, no newline).
    pub fn to_line(&self) -> String {
        let v = match self {
            Request::Status => json!({"cmd": "status"}),
            Request::Stats => json!({"cmd": "stats"}),
            Request::Groups => json!({"cmd": "groups"}),
            Request::Neigh => json!({"cmd": "neigh"}),
            Request::Reload => json!({"cmd": "reload"}),
            Request::Paths => json!({"cmd": "paths"}),
            Request::Flush { level, interface } => match interface {
                Some(i) => json!({"cmd": "flush", "level": level.as_str(), "interface": i}),
                None => json!({"cmd": "flush", "level": level.as_str()}),
            },
            Request::Join { interface, group } => {
                json!({"cmd": "join", "interface": interface, "group": group.to_string()})
            }
            Request::Leave { interface, group } => {
                json!({"cmd": "leave", "interface": interface, "group": group.to_string()})
            }
            Request::PcapStart {
                file,
                interface,
                snaplen,
            } => {
                let mut v = json!({"cmd": "pcap_start", "file": file});
                if let Some(i) = interface {
                    v["interface"] = json!(i);
                }
                if let Some(n) = snaplen {
                    v["snaplen"] = json!(n);
                }
                v
            }
            Request::PcapStop => json!({"cmd": "pcap_stop"}),
        };
        v.to_string()
    }
}

/// The response line (no newline) for a handled request.
pub fn response(result: Result<Value, String>) -> String {
    match result {
        Ok(data) => json!({"ok": true, "data": data}).to_string(),
        Err(error) => json!({"ok": false, "error": error}).to_string(),
    }
}

/// Splits a response line into its data or its error message.
pub fn parse_response(line: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("the daemon sent a malformed response: {e}"))?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(v.get("data").cloned().unwrap_or(Value::Null)),
        Some(false) => Err(v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the daemon reported an error without a message")
            .to_owned()),
        None => Err("the daemon sent a response without \"ok\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips() {
        let reqs = [
            Request::Status,
            Request::Stats,
            Request::Groups,
            Request::Neigh,
            Request::Flush {
                level: Level::Heavy,
                interface: None,
            },
            Request::Flush {
                level: Level::Light,
                interface: Some("ib1".into()),
            },
            Request::Join {
                interface: "ib0".into(),
                group: "239.9.9.9".parse().unwrap(),
            },
            Request::Leave {
                interface: "ib2".into(),
                group: "ff12::1:2".parse().unwrap(),
            },
            Request::Reload,
            Request::Paths,
            Request::PcapStart {
                file: "/tmp/a b.pcap".into(),
                interface: None,
                snaplen: None,
            },
            Request::PcapStart {
                file: "x.pcap".into(),
                interface: Some("ib1".into()),
                snaplen: Some(128),
            },
            Request::PcapStop,
        ];
        for r in reqs {
            assert_eq!(Request::parse(r.to_line().as_bytes()), Ok(r));
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases: [(&str, &str); 14] = [
            ("{", "malformed request"),
            ("[1]", "expected a JSON object"),
            ("{}", "no \"cmd\""),
            ("{\"cmd\":7}", "must be a string"),
            ("{\"cmd\":\"reboot\"}", "unknown command \"reboot\""),
            ("{\"cmd\":\"status\",\"x\":1}", "unknown field \"x\""),
            ("{\"cmd\":\"flush\"}", "needs field \"level\""),
            (
                "{\"cmd\":\"flush\",\"level\":\"deep\"}",
                "unknown flush level",
            ),
            (
                "{\"cmd\":\"join\",\"interface\":\"ib0\",\"group\":\"10.0.0.1\"}",
                "not a multicast",
            ),
            (
                "{\"cmd\":\"join\",\"interface\":\"ib0\",\"group\":\"x\"}",
                "not an IP address",
            ),
            (
                "{\"cmd\":\"leave\",\"group\":\"239.1.1.1\"}",
                "needs field \"interface\"",
            ),
            ("{\"cmd\":\"pcap_start\"}", "needs field \"file\""),
            (
                "{\"cmd\":\"pcap_start\",\"file\":\"x\",\"snaplen\":-1}",
                "must be a whole number",
            ),
            (
                "{\"cmd\":\"pcap_stop\",\"file\":\"x\"}",
                "unknown field \"file\"",
            ),
        ];
        for (line, want) in cases {
            let err = Request::parse(line.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        assert!(Request::parse(&[0xff, 0xfe]).is_err());
    }

    /// Every prefix and every single-byte change of valid requests parses
    /// to a request or an error, never a panic.
    #[test]
    fn damaged_requests_never_panic() {
        let lines = [
            "{\"cmd\":\"flush\",\"level\":\"light\",\"interface\":\"ib0\"}",
            "{\"cmd\":\"join\",\"interface\":\"ib0\",\"group\":\"ff12::1:2\"}",
        ];
        for line in lines {
            let bytes = line.as_bytes();
            for cut in 0..bytes.len() {
                let _ = Request::parse(&bytes[..cut]);
                for b in [0u8, b'"', b'{', b'}', b':', b',', b'\\', 0x80, 0xff, b'9'] {
                    let mut m = bytes.to_vec();
                    m[cut] = b;
                    let _ = Request::parse(&m);
                }
            }
        }
    }

    #[test]
    fn responses_round_trip() {
        let ok = response(Ok(json!({"a": 1})));
        assert_eq!(parse_response(&ok), Ok(json!({"a": 1})));
        let err = response(Err("no such interface".into()));
        assert_eq!(parse_response(&err), Err("no such interface".into()));
        assert!(parse_response("{\"data\":1}").is_err());
        assert!(parse_response("garbage").is_err());
    }
}
