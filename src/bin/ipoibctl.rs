//! `ipoibctl`: command-line tool for the IPoIB dataplane.
//!
//! Errors are one line on stderr (`ipoibctl: error: ...`) and exit status 2,
//! the status clap uses for usage errors.

use std::fmt;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipoib_app::ctl::protocol::{Level, Request};
use ipoib_app::ctl::{client, default_socket_path, render};
use ipoib_dataplane::capture::{decode_input, Link};
use ipoib_dataplane::wire::mgid::MAX_SCOPE;
use ipoib_dataplane::wire::{mgid_for_ip, HwAddr};

#[derive(Parser, Debug)]
#[command(
    name = "ipoibctl",
    version,
    about = "Inspect and drive the IPoIB dataplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the IPoIB multicast GID (MGID) of an IP multicast group.
    Mgid(MgidArgs),
    /// Decode RoCEv2 or IPoIB frames into one JSON object per line.
    ///
    /// Input is a classic pcap (link type 1 Ethernet, 101 raw IP or 242
    /// IPoIB) or hex text with one frame per line; without FILE, stdin.
    Decode(DecodeArgs),
    /// The running daemon: provider, lcores, interfaces with carrier and addresses.
    Status(SocketArgs),
    /// Counters per interface (xstats names), fabric port and multicast engine.
    Stats(SocketArgs),
    /// Multicast groups per interface: flags (BUSY, SENDONLY, ...), state, backoff.
    Groups(SocketArgs),
    /// Neighbour tables (ARP and ND) per interface.
    Neigh(SocketArgs),
    /// Flush multicast state as a port event would; groups are rejoined.
    Flush(FlushArgs),
    /// Join an IP multicast group as a full member on an interface.
    Join(GroupArgs),
    /// Leave a full-member group on an interface.
    Leave(GroupArgs),
    /// Path records per interface: destination GID, LID, SL, MTU, rate, users.
    Paths(SocketArgs),
    /// Re-read the daemon's configuration file, as SIGHUP does: live changes
    /// apply, others are refused by key.
    Reload(SocketArgs),
    /// Capture the IPoIB frames the daemon sends and receives to a pcap
    /// file (LINKTYPE_IPOIB, which tshark decodes), or stop capturing.
    #[command(subcommand)]
    Pcap(PcapCommand),
}

#[derive(Subcommand, Debug)]
enum PcapCommand {
    /// Start writing FILE (created or truncated by the daemon).
    Start(PcapStartArgs),
    /// Stop the running capture and close its file.
    Stop(SocketArgs),
}

#[derive(Args, Debug)]
struct PcapStartArgs {
    /// The capture file; a relative path is taken from this directory.
    file: PathBuf,
    /// Only this interface (default: every interface).
    #[arg(long)]
    interface: Option<String>,
    /// Bytes kept of each record, the 40-byte pseudo header included
    /// (64-4136; default: whole frames).
    #[arg(long, value_name = "N")]
    snaplen: Option<u32>,
    #[command(flatten)]
    socket: SocketArgs,
}

#[derive(Args, Debug)]
struct SocketArgs {
    /// The daemon's control socket (default: as ipoibd's --socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FlushLevelArg {
    /// Client re-register, GID change: memberships redone, carrier stays.
    Light,
    /// Port error or LID change: carrier drops until the broadcast group rejoins.
    Normal,
    /// P_Key change: as normal.
    Heavy,
}

#[derive(Args, Debug)]
struct FlushArgs {
    #[arg(value_enum)]
    level: FlushLevelArg,
    /// Only this interface (default: every interface).
    #[arg(long)]
    interface: Option<String>,
    #[command(flatten)]
    socket: SocketArgs,
}

#[derive(Args, Debug)]
struct GroupArgs {
    /// Interface name, e.g. ib0.
    interface: String,
    /// IPv4 or IPv6 multicast group.
    group: String,
    #[command(flatten)]
    socket: SocketArgs,
}

#[derive(Args, Debug)]
struct DecodeArgs {
    /// A pcap file or a file of hex lines; stdin when absent.
    file: Option<PathBuf>,
    /// What each hex line starts with (pcap files say it themselves).
    #[arg(long, value_enum, default_value_t = HexLink::Ethernet)]
    link: HexLink,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum HexLink {
    /// Ethernet II carrying RoCEv2.
    Ethernet,
    /// An IPv4/IPv6 packet carrying RoCEv2.
    Ip,
    /// A LINKTYPE_IPOIB record: 40-byte pseudo header and IPoIB frame.
    Ipoib,
}

#[derive(Args, Debug)]
struct MgidArgs {
    /// IPv4 or IPv6 multicast group; 255.255.255.255 gives the broadcast MGID.
    address: String,
    /// Partition key, hex (0x...) or decimal; the MGID always carries the
    /// full-member bit.
    #[arg(long, default_value = "0xFFFF")]
    pkey: String,
    /// The link's multicast scope nibble, 0-15 (2 = link-local).
    #[arg(long, default_value = "2")]
    scope: String,
    /// Print a JSON object with the MGID, its bytes and the hardware address.
    #[arg(long)]
    json: bool,
}

/// An error the user can fix: bad input or an address with no MGID.
#[derive(Debug)]
struct CliError(String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(output)) => {
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{output}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(err) => {
            eprintln!("ipoibctl: error: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The output to print, or `None` when the command wrote it itself.
fn run(cli: &Cli) -> Result<Option<String>, CliError> {
    match &cli.command {
        Command::Mgid(args) => mgid(args).map(Some),
        Command::Decode(args) => decode(args).map(|()| None),
        Command::Status(a) => ask(a, Request::Status, render::status),
        Command::Stats(a) => ask(a, Request::Stats, render::stats),
        Command::Groups(a) => ask(a, Request::Groups, render::groups),
        Command::Neigh(a) => ask(a, Request::Neigh, render::neigh),
        Command::Paths(a) => ask(a, Request::Paths, render::paths),
        Command::Reload(a) => ask(a, Request::Reload, render::reload),
        Command::Flush(f) => {
            let level = match f.level {
                FlushLevelArg::Light => Level::Light,
                FlushLevelArg::Normal => Level::Normal,
                FlushLevelArg::Heavy => Level::Heavy,
            };
            let req = Request::Flush {
                level,
                interface: f.interface.clone(),
            };
            ask(&f.socket, req, render::flush)
        }
        Command::Join(g) => ask(&g.socket, group_request(g, true)?, |d| {
            render::membership(d, true)
        }),
        Command::Leave(g) => ask(&g.socket, group_request(g, false)?, |d| {
            render::membership(d, false)
        }),
        Command::Pcap(PcapCommand::Start(p)) => {
            // The daemon has its own working directory: send an absolute path.
            let file = std::path::absolute(&p.file)
                .map_err(|e| CliError(format!("{}: {e}", p.file.display())))?;
            let file = file
                .to_str()
                .ok_or_else(|| CliError(format!("{}: not UTF-8", file.display())))?
                .to_owned();
            let req = Request::PcapStart {
                file,
                interface: p.interface.clone(),
                snaplen: p.snaplen,
            };
            ask(&p.socket, req, |d| render::pcap(d, true))
        }
        Command::Pcap(PcapCommand::Stop(s)) => {
            ask(s, Request::PcapStop, |d| render::pcap(d, false))
        }
    }
}

fn group_request(args: &GroupArgs, join: bool) -> Result<Request, CliError> {
    let group: IpAddr = args
        .group
        .parse()
        .map_err(|_| CliError(format!("invalid IP address '{}'", args.group)))?;
    if !group.is_multicast() {
        return Err(CliError(format!("{group} is not a multicast group")));
    }
    let interface = args.interface.clone();
    Ok(if join {
        Request::Join { interface, group }
    } else {
        Request::Leave { interface, group }
    })
}

/// One request to the daemon; its answer as a table, or as JSON.
fn ask(
    args: &SocketArgs,
    req: Request,
    table: fn(&serde_json::Value) -> String,
) -> Result<Option<String>, CliError> {
    let path = args.socket.clone().unwrap_or_else(default_socket_path);
    let data = client::request(&path, &req).map_err(CliError)?;
    if args.json {
        return Ok(Some(data.to_string()));
    }
    // Tables end with a newline; the caller adds one.
    Ok(Some(table(&data).trim_end().to_owned()))
}

fn decode(args: &DecodeArgs) -> Result<(), CliError> {
    let input = match &args.file {
        Some(path) => std::fs::read(path)
            .map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
            buf
        }
    };
    let link = match args.link {
        HexLink::Ethernet => Link::Ethernet,
        HexLink::Ip => Link::RawIp,
        HexLink::Ipoib => Link::Ipoib,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let decoded = decode_input(&input, link, &mut out);
    // Frames decoded before a read error are still printed.
    let flushed = out.flush();
    decoded.map_err(|e| CliError(e.to_string()))?;
    flushed.map_err(|e| CliError(format!("cannot write output: {e}")))
}

/// A number in hex (`0x` prefix) or decimal; digits only, no sign.
fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn parse_pkey(text: &str) -> Result<u16, CliError> {
    let value = parse_number(text)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            CliError(format!(
                "invalid P_Key '{text}': expected 0x0001-0xffff in hex (0x...) or decimal"
            ))
        })?;
    // 0x0000 and 0x8000 are the invalid P_Key (IBA 10.9.1).
    if value & 0x7fff == 0 {
        return Err(CliError(format!(
            "invalid P_Key {value:#06x}: its low 15 bits are zero"
        )));
    }
    Ok(value)
}

fn parse_scope(text: &str) -> Result<u8, CliError> {
    let value = parse_number(text).ok_or_else(|| {
        CliError(format!(
            "invalid scope '{text}': expected a number from 0 to 15"
        ))
    })?;
    u8::try_from(value)
        .ok()
        .filter(|&s| s <= MAX_SCOPE)
        .ok_or_else(|| CliError(format!("scope {value} is out of range (0-15)")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn mgid(args: &MgidArgs) -> Result<String, CliError> {
    let address: IpAddr = args
        .address
        .parse()
        .map_err(|_| CliError(format!("invalid IP address '{}'", args.address)))?;
    let pkey = parse_pkey(&args.pkey)?;
    let scope = parse_scope(&args.scope)?;
    let mgid = mgid_for_ip(address, pkey, scope).map_err(|e| CliError(e.to_string()))?;
    if !args.json {
        return Ok(mgid.to_string());
    }
    // Written by hand to keep the documented key order.
    Ok(format!(
        "{{\"address\":{},\"pkey\":{},\"scope\":{},\"mgid\":{},\"mgid_hex\":{},\"hwaddr_hex\":{}}}",
        json_string(&address.to_string()),
        json_string(&format!("{pkey:#06x}")),
        scope,
        json_string(&mgid.to_string()),
        json_string(&hex(mgid.as_bytes())),
        json_string(&hex(&HwAddr::multicast(mgid).to_bytes())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_hex_or_decimal() {
        assert_eq!(parse_number("0xFFFF"), Some(0xffff));
        assert_eq!(parse_number("0X8001"), Some(0x8001));
        assert_eq!(parse_number("32769"), Some(32769));
        for bad in ["", "0x", "+5", "-1", "0x+f", "1.0", "ff", " 1"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pkey_range() {
        assert_eq!(parse_pkey("0x7fff").unwrap(), 0x7fff);
        assert!(parse_pkey("0x10000").is_err());
        assert!(parse_pkey("0").is_err());
        assert!(parse_pkey("0x8000").is_err());
    }

    #[test]
    fn scope_range() {
        assert_eq!(parse_scope("15").unwrap(), 15);
        assert!(parse_scope("16").is_err());
        assert!(parse_scope("300").is_err());
    }
}
