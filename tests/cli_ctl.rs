//! ipoibctl against a running ipoibd: the control socket end to end.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: the machine may be shared with other builds.
const DEADLINE: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipoibctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ctl_at(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
        .args(args)
        .arg("--socket")
        .arg(sock)
        .output()
        .expect("ipoibctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A daemon child, killed on drop so a failing test leaves nothing behind.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
    /// Copies stdout to a file; done once the daemon has exited.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(name: &str) -> Daemon {
        Daemon::start_with(name, None)
    }

    /// A daemon on `config` (written to the test's directory), or the
    /// embedded default.
    fn start_with(name: &str, config: Option<&str>) -> Daemon {
        let dir = temp_dir(name);
        let sock = dir.join("s.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipoibd"));
        if let Some(text) = config {
            let file = dir.join("ipoibd.toml");
            std::fs::write(&file, text).unwrap();
            cmd.arg("--config").arg(file);
        }
        let mut child = cmd
            .args(["--duration", "0", "--socket"])
            .arg(&sock)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("ipoibd starts");
        // Every stdout line goes to a file (for failure reports) and to us,
        // so start-up is waited for on the daemon's own announcement.
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        let mut log = std::fs::File::create(dir.join("stdout")).unwrap();
        let stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let _ = lines_tx.send(line);
            }
        });
        let mut d = Daemon {
            child: Some(child),
            dir,
            sock,
            reader: Some(reader),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with("control socket:") => break,
                Ok(_) => continue,
                Err(_) => panic!("ipoibd never announced its socket\n{}", d.output()),
            }
        }
        d.wait_until("the control socket answers", |d| {
            ctl_at(&d.sock, &["status"]).0 == 0
        });
        d
    }

    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("stdout:\n{}\nstderr:\n{}", read("stdout"), read("stderr"))
    }

    /// Asks `ok` (which runs `ipoibctl`, a round trip to the daemon) until it
    /// holds; fails (with the daemon's output) at the deadline or if the
    /// daemon exits.
    fn wait_until(&mut self, what: &str, mut ok: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if ok(self) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "ipoibd exited ({status}) waiting for {what}\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.output()
            );
        }
    }

    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        ctl_at(&self.sock, args)
    }

    /// `ipoibctl CMD --json`'s data; the command must succeed.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (code, out, err) = self.ctl(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// SIGTERM, then the exit status and stdout.
    fn terminate(mut self) -> (i32, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        // Wait on a thread so the deadline is a channel timeout.
        let (done_tx, done) = std::sync::mpsc::channel();
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        let status = match done.recv_timeout(DEADLINE) {
            Ok(Ok(s)) => s,
            _ => {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                panic!("ipoibd did not stop after SIGTERM\n{}", self.output());
            }
        };
        // Every line of stdout is in the file once the reader is done.
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mgid(group: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
        .args(["mgid", group])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn iface<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["interfaces"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|i| i["interface"] == name || i["name"] == name)
        })
        .unwrap_or_else(|| panic!("no {name} in {data}"))
}

fn group<'a>(groups: &'a Value, name: &str, mgid: &str) -> Option<&'a Value> {
    iface(groups, name)["groups"]
        .as_array()?
        .iter()
        .find(|g| g["mgid"] == mgid)
}

fn flags(g: &Value) -> Vec<&str> {
    g["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn counter(stats: &Value, name: &str, counter: &str) -> u64 {
    iface(stats, name)["xstats"]
        .as_array()
        .and_then(|x| x.iter().find(|p| p[0] == counter))
        .and_then(|p| p[1].as_u64())
        .unwrap_or_else(|| panic!("no {counter} for {name} in {stats}"))
}

/// Sends raw lines on one connection and reads one answer per non-empty line.
fn raw(sock: &Path, lines: &[&str]) -> Vec<Value> {
    let mut s = UnixStream::connect(sock).unwrap();
    // The daemon hangs up on an oversized request: later writes may fail.
    for l in lines {
        let _ = s.write_all(l.as_bytes()).and_then(|()| s.write_all(b"\n"));
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

/// Run as root, the test can be another user: the file mode keeps them
/// out, and with the mode widened the credential check still does.
fn other_users_are_refused(sock: &Path) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the other-user checks are skipped");
        return;
    }
    let as_nobody = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
            .args(["status", "--socket"])
            .arg(sock)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("ipoibctl runs as nobody");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot connect to"), "{err}");
    let set = |mode| std::fs::set_permissions(sock, std::fs::Permissions::from_mode(mode));
    set(0o666).unwrap();
    let (code, err) = as_nobody();
    set(0o600).unwrap();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with("ipoibctl: error: permission denied: uid 65534"),
        "{err}"
    );
}

#[test]
fn ipoibctl_drives_a_running_daemon() {
    let mut d = Daemon::start("main");
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    other_users_are_refused(&d.sock);

    // status: every interface of the embedded default comes up.
    d.wait_until("carrier on ib0..ib2", |d| {
        let s = d.json(&["status"]);
        ["ib0", "ib1", "ib2"]
            .iter()
            .all(|n| iface(&s, n)["carrier"] == true)
    });
    let (code, table, _) = d.ctl(&["status"]);
    assert_eq!(code, 0);
    for n in ["ib0", "ib1", "ib2"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing:\n{table}"));
        assert!(row.contains(" up "), "{row}");
    }
    assert!(table.contains("10.0.0.1/24"), "{table}");

    // stats: counters grow while traffic runs.
    let first = counter(&d.json(&["stats"]), "ib1", "rx_good_packets");
    d.wait_until("ib1's rx counter to grow", |d| {
        counter(&d.json(&["stats"]), "ib1", "rx_good_packets") > first
    });
    let (code, table, _) = d.ctl(&["stats"]);
    assert_eq!(code, 0);
    assert!(
        table.lines().any(|l| l.starts_with("tx_good_packets")),
        "{table}"
    );
    // Then per lcore: the embedded default polls on two.
    assert!(
        table.contains("lcore0") && table.contains("lcore1"),
        "{table}"
    );

    // groups: ib0 only sends to 239.2.2.2.
    let sendonly = mgid("239.2.2.2");
    d.wait_until("ib0's send-only group", |d| {
        group(&d.json(&["groups"]), "ib0", &sendonly)
            .is_some_and(|g| flags(g).contains(&"SENDONLY"))
    });
    let (_, table, _) = d.ctl(&["groups"]);
    let row = table
        .lines()
        .skip_while(|l| !l.starts_with("ib0"))
        .find(|l| l.contains(&sendonly))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("SENDONLY"), "{row}");

    // neigh: ib0 resolved its unicast flow's destination.
    d.wait_until("ib0 to resolve 10.0.0.2", |d| {
        let n = d.json(&["neigh"]);
        iface(&n, "ib0")["neighbours"].as_array().is_some_and(|l| {
            l.iter()
                .any(|e| e["ip"] == "10.0.0.2" && e["hwaddr"].is_string())
        })
    });
    let (_, table, _) = d.ctl(&["neigh"]);
    assert!(table.contains("10.0.0.2"), "{table}");

    // paths: the path to ib1's GID serves that neighbour, with a record
    // from the SA (LID 2, the fabric's MTU) and an address handle.
    let p = d.json(&["paths"]);
    let to_ib1 = iface(&p, "ib0")["paths"]
        .as_array()
        .and_then(|l| {
            l.iter().find(|e| {
                e["users"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|ip| ip == "10.0.0.2"))
            })
        })
        .unwrap_or_else(|| panic!("no path for 10.0.0.2 in {p}"));
    assert_eq!(to_ib1["dlid"], 2, "{to_ib1}");
    assert_eq!(to_ib1["ah"], true, "{to_ib1}");
    assert_eq!(to_ib1["mtu"], 2048, "{to_ib1}");
    assert!(
        iface(&p, "ib0")["stats"]["answers"].as_u64() > Some(0),
        "{p}"
    );
    let (code, table, _) = d.ctl(&["paths"]);
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|l| l.contains("10.0.0.2"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("ready") && row.contains("0x2"), "{row}");

    // join, then leave, a group on ib2.
    let extra = mgid("239.9.9.9");
    let (code, out, err) = d.ctl(&["join", "ib2", "239.9.9.9"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&extra), "{out}");
    d.wait_until("ib2 to join 239.9.9.9", |d| {
        group(&d.json(&["groups"]), "ib2", &extra)
            .is_some_and(|g| g["status"] == "joined" && !flags(g).contains(&"SENDONLY"))
    });
    let (code, _, _) = d.ctl(&["leave", "ib2", "239.9.9.9"]);
    assert_eq!(code, 0);
    d.wait_until("ib2 to leave 239.9.9.9", |d| {
        group(&d.json(&["groups"]), "ib2", &extra).is_none()
    });
    let (code, _, err) = d.ctl(&["leave", "ib2", "239.9.9.9"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a full member"), "{err}");
    let (code, _, err) = d.ctl(&["join", "ib7", "239.9.9.9"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("ipoibctl: error: unknown interface"),
        "{err}"
    );

    // flush light: memberships are redone and every group rejoins.
    let full = mgid("239.1.1.1");
    let before = d.json(&["stats"]);
    let (code, out, err) = d.ctl(&["flush", "light"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ib0: flush light"), "{out}");
    d.wait_until("groups to rejoin after the flush", |d| {
        let g = d.json(&["groups"]);
        ["ib0", "ib1", "ib2"]
            .iter()
            .all(|n| group(&g, n, &full).is_some_and(|g| g["status"] == "joined"))
    });
    for n in ["ib0", "ib1", "ib2"] {
        let after = d.json(&["stats"]);
        assert!(
            counter(&after, n, "mcast_flushes") > counter(&before, n, "mcast_flushes"),
            "{n}"
        );
    }

    // Garbage is answered with errors on the same connection; the daemon
    // keeps serving.
    let answers = raw(
        &d.sock,
        &[
            "{nope",
            "{\"cmd\":\"reboot\"}",
            "{\"cmd\":\"status\",\"extra\":1}",
            "[]",
            "{\"cmd\":\"status\"}",
        ],
    );
    assert_eq!(answers.len(), 5, "{answers:?}");
    for a in &answers[..4] {
        assert_eq!(a["ok"], false, "{a}");
        assert!(a["error"].is_string(), "{a}");
    }
    assert_eq!(answers[4]["ok"], true);
    let huge = "x".repeat(100 * 1024);
    let answers = raw(&d.sock, &[&huge]);
    assert!(answers[0]["error"]
        .as_str()
        .unwrap()
        .contains("longer than"));

    // Two clients at once: the second is answered while the first is
    // still connected and silent.
    let mut first = UnixStream::connect(&d.sock).unwrap();
    let second = raw(&d.sock, &["{\"cmd\":\"groups\"}"]);
    assert_eq!(second[0]["ok"], true);
    first.write_all(b"{\"cmd\":\"stats\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&first).read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"data\""), "{line}");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let sock = d.sock.clone();
            std::thread::spawn(move || ctl_at(&sock, &["status"]).0)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 0);
    }
    // Sixteen clients at once, each mixing good and bad requests on its
    // connection: every one gets its own answers, in order.
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let sock = d.sock.clone();
            std::thread::spawn(move || {
                let bad = format!("{{\"cmd\":\"flush\",\"level\":\"x{i}\"}}");
                raw(
                    &sock,
                    &["{\"cmd\":\"stats\"}", &bad, "{\"cmd\":\"groups\"}"],
                )
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let a = t.join().unwrap();
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a[0]["data"]["interfaces"].is_array(), "{}", a[0]);
        assert!(
            a[1]["error"]
                .as_str()
                .unwrap()
                .contains(&format!("\"x{i}\"")),
            "{}",
            a[1]
        );
        assert!(a[2]["data"]["interfaces"].is_array(), "{}", a[2]);
    }

    // A second daemon on the same socket is refused; the first one stays.
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .args(["--duration", "0", "--socket"])
        .arg(&d.sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving"), "{err}");
    assert_eq!(d.ctl(&["status"]).0, 0);

    let sock = d.sock.clone();
    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no leak)"), "{out}");
    assert!(out.contains("unbalanced=0"), "{out}");
    assert!(!sock.exists(), "socket removed at exit");
}

#[test]
fn no_daemon_is_one_clear_line() {
    let dir = temp_dir("none");
    let (code, out, err) = ctl_at(&dir.join("absent.sock"), &["status"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ipoibctl: error: cannot connect to "),
        "{err}"
    );
    assert!(err.trim_end().ends_with("(is ipoibd running?)"), "{err}");
}

/// Two soft hosts on one lcore; `ib0_groups` and `ib1_mtu` vary between
/// reloads, as do the flow's rate and the log level.
fn reload_config(ib0_groups: &str, ib1_mtu: u16, rate: u64, level: &str) -> String {
    format!(
        "[dataplane]\nlcores = [0]\nmempool_size = 2048\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nipv4 = [\"10.0.0.1/24\"]\ngroups = [{ib0_groups}]\n\
         [[interface]]\nname = \"ib1\"\nport = 2\nipv4 = [\"10.0.0.2/24\"]\nmtu = {ib1_mtu}\ngroups = [\"239.1.1.1\"]\n\
         [[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nrate_pps = {rate}\n\
         [log]\nlevel = \"{level}\"\n"
    )
}

impl Daemon {
    fn config_file(&self) -> PathBuf {
        self.dir.join("ipoibd.toml")
    }

    fn hup(&self) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
    }

    /// Waits until the daemon's log (stderr) holds `n` lines containing `needle`.
    fn wait_log(&mut self, needle: &str, n: usize) {
        let file = self.dir.join("stderr");
        self.wait_until(&format!("{n} log line(s) with {needle:?}"), |_| {
            std::fs::read_to_string(&file)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
                >= n
        });
    }
}

fn joined(groups: &Value, name: &str, mgid: &str) -> bool {
    group(groups, name, mgid).is_some_and(|g| g["status"] == "joined")
}

#[test]
fn sighup_applies_live_changes_and_refuses_the_rest() {
    let mut d = Daemon::start_with(
        "reload",
        Some(&reload_config("\"239.1.1.1\"", 2044, 1000, "info")),
    );
    let (base, extra) = (mgid("239.1.1.1"), mgid("239.5.5.5"));
    d.wait_until("ib0 to join 239.1.1.1", |d| {
        joined(&d.json(&["groups"]), "ib0", &base)
    });

    // A group added live, by SIGHUP.
    std::fs::write(
        d.config_file(),
        reload_config("\"239.1.1.1\", \"239.5.5.5\"", 2044, 1000, "info"),
    )
    .unwrap();
    d.hup();
    d.wait_until("ib0 to join 239.5.5.5 after SIGHUP", |d| {
        joined(&d.json(&["groups"]), "ib0", &extra)
    });
    d.wait_log("config reloaded", 1);
    // Each control-plane event is one structured log line.
    d.wait_log(
        &format!("event=\"join\" interface=ib0 mgid={extra} sendonly=false"),
        1,
    );
    d.wait_log("event=\"carrier\" interface=ib1 carrier=\"up\"", 1);
    d.wait_log(
        "event=\"neighbour\" interface=ib0 ip=10.0.0.2 state=reachable",
        1,
    );
    let g = d.json(&["groups"]);
    assert_eq!(
        group(&g, "ib0", &extra).unwrap()["address"],
        "239.5.5.5",
        "the new group is named"
    );

    // And removed live; the flow's rate changes; the log level too.
    std::fs::write(
        d.config_file(),
        reload_config("\"239.1.1.1\"", 2044, 2000, "debug"),
    )
    .unwrap();
    d.hup();
    d.wait_until("ib0 to leave 239.5.5.5 after SIGHUP", |d| {
        group(&d.json(&["groups"]), "ib0", &extra).is_none()
    });
    d.wait_log("config reloaded", 2);
    d.wait_log(&format!("event=\"leave\" interface=ib0 mgid={extra}"), 1);
    assert!(joined(&d.json(&["groups"]), "ib0", &base));
    let (code, _, _) = d.ctl(&["flush", "normal", "--interface", "ib1"]);
    assert_eq!(code, 0);
    d.wait_log("event=\"flush\" interface=ib1 level=\"normal\"", 1);
    d.wait_log("event=\"carrier\" interface=ib1 carrier=\"down\"", 1);
    d.wait_log("event=\"carrier\" interface=ib1 carrier=\"up\"", 2);

    // A change that needs a restart is refused by name; the live one in
    // the same file applies. Through the control socket this time.
    std::fs::write(
        d.config_file(),
        reload_config("\"239.1.1.1\"", 1500, 3000, "debug"),
    )
    .unwrap();
    let r = d.json(&["reload"]);
    assert_eq!(
        r["applied"],
        serde_json::json!(["traffic[0].rate_pps"]),
        "{r}"
    );
    assert_eq!(r["refused"][0]["key"], "interface[1].mtu", "{r}");
    assert_eq!(r["refused"].as_array().unwrap().len(), 1, "{r}");
    let (code, out, _) = d.ctl(&["reload"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("refused: interface[1].mtu (needs a restart)"),
        "{out}"
    );
    assert_eq!(iface(&d.json(&["status"]), "ib1")["mtu"], 2044);

    // An invalid file is refused with its located error; the old
    // configuration keeps running.
    std::fs::write(
        d.config_file(),
        reload_config("\"239.1.1.1\"", 9000, 3000, "debug"),
    )
    .unwrap();
    d.hup();
    d.wait_log("config reload refused", 1);
    let (code, _, err) = d.ctl(&["reload"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("ipoibd.toml:")
            && err.contains("interface[1].mtu")
            && err.contains("68..=4092"),
        "{err}"
    );
    assert!(joined(&d.json(&["groups"]), "ib0", &base));
    let rx = counter(&d.json(&["stats"]), "ib1", "rx_good_packets");
    d.wait_until("traffic to keep flowing", |d| {
        counter(&d.json(&["stats"]), "ib1", "rx_good_packets") > rx
    });

    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no leak)"), "{out}");
    assert!(out.contains("unbalanced=0 violations=0"), "{out}");
}

#[test]
fn reload_without_a_file_is_refused() {
    let d = Daemon::start("nofile");
    let (code, _, err) = d.ctl(&["reload"]);
    assert_eq!(code, 2);
    assert!(err.contains("no configuration file to reload"), "{err}");
    assert_eq!(d.ctl(&["status"]).0, 0);
}

/// One HTTP request to the metrics endpoint; the whole response.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    out
}

/// The value of one sample line `name{labels} value` in a scrape.
fn sample(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_endpoint_serves_the_stats_counters() {
    let cfg = reload_config("\"239.1.1.1\"", 2044, 1000, "info")
        + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let mut d = Daemon::start_with("metrics", Some(&cfg));
    let announced = std::fs::read_to_string(d.dir.join("stdout")).unwrap();
    let addr = announced
        .lines()
        .find_map(|l| l.strip_prefix("metrics: http://")?.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address announced:\n{announced}"))
        .to_owned();
    let series = "ipoib_rx_packets_total{interface=\"ib1\"}";
    d.wait_until("ib1's packets in a scrape", |_| {
        sample(&http_get(&addr, "/metrics"), series).is_some_and(|v| v > 0)
    });
    // A scrape reads the counters `ipoibctl stats` reads.
    let before = counter(&d.json(&["stats"]), "ib1", "rx_good_packets");
    let page = http_get(&addr, "/metrics");
    let after = counter(&d.json(&["stats"]), "ib1", "rx_good_packets");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    let scraped = sample(&page, series).unwrap();
    assert!(
        before <= scraped && scraped <= after,
        "{before} {scraped} {after}"
    );
    for line in [
        "# TYPE ipoib_rx_packets_total counter",
        "# TYPE ipoib_drops_total counter",
        "# TYPE ipoib_mempool_free_buffers gauge",
        "ipoib_carrier{interface=\"ib0\"} 1",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
    }
    assert!(page.contains("# HELP ipoib_rx_packets_total "), "{page}");
    // Groups by state, as `ipoibctl groups` counts them (nothing joins or
    // leaves here once up).
    let g = d.json(&["groups"]);
    let joined = iface(&g, "ib0")["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["status"] == "joined")
        .count();
    assert!(joined >= 2, "broadcast and 239.1.1.1 at least: {g}");
    assert_eq!(
        sample(
            &page,
            "ipoib_mcast_groups{interface=\"ib0\",state=\"joined\"}"
        ),
        Some(joined as u64),
        "{page}"
    );
    assert!(
        page.contains("ipoib_drops_total{interface=\"ib0\",reason=\"tx_no_neighbour\"}"),
        "{page}"
    );
    assert!(http_get(&addr, "/").starts_with("HTTP/1.1 404"));
    // Garbage on the port: an error answer, and the endpoint keeps serving.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(http_get(&addr, "/metrics").starts_with("HTTP/1.1 200"));

    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "endpoint closed at exit"
    );
}

/// `ipoibctl pcap start|stop`: one interface's frames, cut at the snap
/// length, in a LINKTYPE_IPOIB file that reads back (and that tshark
/// decodes without a malformed frame, where tshark is installed).
#[test]
fn pcap_start_and_stop_through_the_socket() {
    use ipoib_dataplane::capture::{LinkHeader, PcapReader, LINKTYPE_IPOIB};
    let mut d = Daemon::start("pcap");
    let file = d.dir.join("ib1.pcap");
    let file_s = file.to_str().unwrap();

    let (code, _, err) = d.ctl(&["pcap", "stop"]);
    assert_eq!(code, 2);
    assert!(err.contains("no capture is running"), "{err}");
    let (code, _, err) = d.ctl(&["pcap", "start", "/nonexistent-dir/x.pcap"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot create /nonexistent-dir/x.pcap"),
        "{err}"
    );
    let (code, _, err) = d.ctl(&["pcap", "start", file_s, "--interface", "ib9"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown interface \"ib9\""), "{err}");
    let (code, _, err) = d.ctl(&["pcap", "start", file_s, "--snaplen", "8"]);
    assert_eq!(code, 2);
    assert!(err.contains("snap length 8 is out of range"), "{err}");

    let (code, out, err) = d.ctl(&[
        "pcap",
        "start",
        file_s,
        "--interface",
        "ib1",
        "--snaplen",
        "100",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("capturing ib1 to {file_s}")), "{out}");
    let (code, _, err) = d.ctl(&["pcap", "start", file_s]);
    assert_eq!(code, 2);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(d.json(&["status"])["capture"]["file"], file_s);
    d.wait_until("ib1's capture to count frames", |d| {
        counter(&d.json(&["stats"]), "ib1", "capture_packets") > 1000
    });
    assert_eq!(counter(&d.json(&["stats"]), "ib0", "capture_packets"), 0);
    let done = d.json(&["pcap", "stop"]);
    let written = done["written"].as_u64().unwrap();
    assert!(written > 0, "{done}");
    assert!(d.json(&["status"])["capture"].is_null());

    let mut reader = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!((reader.linktype(), reader.snaplen()), (LINKTYPE_IPOIB, 100));
    let (mut sent, mut from_ib0) = (0, 0);
    let mut n = 0;
    for rec in reader.by_ref() {
        let rec = rec.unwrap();
        n += 1;
        assert!(rec.data.len() <= 100 && rec.orig_len as usize >= rec.data.len());
        let (link, frame) = LinkHeader::split(&rec.data).expect("a pseudo header");
        let ethertype = u16::from_be_bytes([frame[0], frame[1]]);
        assert!(
            [0x0800, 0x0806, 0x86dd].contains(&ethertype),
            "{ethertype:#x}"
        );
        match link {
            LinkHeader::DestHwAddr(_) => sent += 1,
            // Received: the GRH form names the sender's QP (ib0 is 0x101).
            LinkHeader::Grh(g) => from_ib0 += (g[5..8] == [0, 1, 1]) as u64,
        }
    }
    assert_eq!(n, written);
    assert!(sent > 0 && from_ib0 > 0, "sent {sent}, from ib0 {from_ib0}");

    if Command::new("tshark").arg("-v").output().is_ok() {
        let out = Command::new("tshark")
            .args(["-r", file_s, "-T", "fields", "-e", "frame.protocols"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().count() as u64, written);
        assert!(text.lines().all(|l| l.starts_with("ipoib:")), "{text}");
        assert!(!text.contains("malformed"), "{text}");
    } else {
        eprintln!("tshark is not installed: the decode check is skipped");
    }

    // A relative path is the client's: ipoibctl sends it absolute.
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibctl"))
        .args(["pcap", "start", "rel.pcap", "--socket"])
        .arg(&d.sock)
        .current_dir(&d.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(d.dir.join("rel.pcap").exists());
    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("capture: "), "{out}");
}

/// Two soft hosts, each with a P_Key 0x8001 child on its port: flows inside
/// each partition, a child's multicast, and one static neighbour of the
/// child that is the other host's parent QP (another partition).
const CHILDREN: &str = "[dataplane]\nlcores = [0]\nmempool_size = 2048\n#provider\n\
[[interface]]\nname = \"ib0\"\nport = 1\nipv4 = [\"10.0.0.1/24\"]\ngroups = [\"239.1.1.1\"]\n#ib0\n\
[[interface]]\nname = \"ib0.8001\"\nparent = \"ib0\"\npkey = 0x8001\nipv4 = [\"10.1.0.1/24\"]\ngroups = [\"239.1.1.1\"]\n\
[[interface.neighbour]]\nip = \"10.1.0.99\"\nqpn = 0x102\ngid = \"fe80::2:c903:0:2\"\n\
[[interface]]\nname = \"ib1\"\nport = 2\nipv4 = [\"10.0.0.2/24\"]\ngroups = [\"239.1.1.1\"]\n#ib1\n\
[[interface]]\nname = \"ib1.8001\"\nparent = \"ib1\"\npkey = 0x8001\nipv4 = [\"10.1.0.2/24\"]\ngroups = [\"239.1.1.1\"]\n\
[[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nrate_pps = 1000\n\
[[traffic]]\nfrom = \"ib0.8001\"\nto = \"10.1.0.2\"\nrate_pps = 1000\n\
[[traffic]]\nfrom = \"ib0.8001\"\nto = \"10.1.0.99\"\nrate_pps = 1000\n\
[[traffic]]\nfrom = \"ib1.8001\"\nto = \"239.1.1.1\"\nrate_pps = 1000\n";

#[test]
fn child_interfaces_join_their_own_broadcast_groups_and_keep_partitions_apart() {
    children_keep_partitions_apart("children", CHILDREN, true);
}

/// The same two hosts on rocev2, on loopback addresses: each host's parent
/// and child share one address, and the kernel steers unicast to the QP
/// the BTH names; broadcast groups of both partitions are one IP group,
/// kept apart by each QP's P_Key check.
#[test]
fn child_interfaces_on_rocev2_share_an_address_and_keep_partitions_apart() {
    let port = std::net::UdpSocket::bind("127.0.9.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let provider = format!("[provider]\nkind = \"rocev2\"\n[provider.rocev2]\nport = {port}");
    let config = CHILDREN
        .replace("#provider", &provider)
        .replace("#ib0", "local_ip = \"127.0.9.1\"")
        .replace("#ib1", "local_ip = \"127.0.9.2\"")
        .replace("fe80::2:c903:0:2", "::ffff:127.0.9.2");
    children_keep_partitions_apart("children-rocev2", &config, false);
}

fn children_keep_partitions_apart(name: &str, config: &str, fabric: bool) {
    let mut d = Daemon::start_with(name, Some(config));
    let bcast = |pkey: &str| format!("ff12:401b:{pkey}::ffff:ffff");
    d.wait_until("every interface's broadcast group", |d| {
        let g = d.json(&["groups"]);
        ["ib0", "ib1"].iter().all(|n| joined(&g, n, &bcast("ffff")))
            && ["ib0.8001", "ib1.8001"]
                .iter()
                .all(|n| joined(&g, n, &bcast("8001")))
    });
    let g = d.json(&["groups"]);
    assert!(group(&g, "ib0", &bcast("8001")).is_none(), "{g}");
    assert!(group(&g, "ib0.8001", &bcast("ffff")).is_none(), "{g}");
    // 239.1.1.1 is one group per partition: the MGID carries the P_Key.
    let m8001 = mgid("239.1.1.1").replace(":ffff:", ":8001:");
    assert!(joined(&g, "ib1.8001", &m8001), "{g}");

    // The child shows like any interface, on its parent's port with its own QP.
    let s = d.json(&["status"]);
    let (p, c) = (iface(&s, "ib0"), iface(&s, "ib0.8001"));
    assert_eq!((&c["port"], &c["gid"]), (&p["port"], &p["gid"]), "{s}");
    assert_eq!(c["parent"], "ib0");
    assert_eq!(p["parent"], Value::Null);
    assert_eq!(
        (p["qpn"].as_str(), c["qpn"].as_str()),
        (Some("0x101"), Some("0x10101"))
    );
    assert_eq!(c["pkey"], "0x8001");
    let (code, table, _) = d.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ib1.8001") && l.contains("0x10102")),
        "{table}"
    );

    // Traffic flows within each partition and not across.
    d.wait_until("each partition's flow and the child's multicast", |d| {
        let st = d.json(&["stats"]);
        counter(&st, "ib1", "rx_good_packets") > 100
            && counter(&st, "ib1.8001", "rx_good_packets") > 100
            && counter(&st, "ib0.8001", "rx_good_packets") > 100
            && (!fabric || counter(&st, "ib1", "fabric_rx_pkey_mismatch_drops") > 100)
            // rocev2: the provider's own counters, published by the lcore.
            && (fabric || counter(&st, "ib1", "rocev2_rx_pkey_mismatch_drops") > 100)
    });
    let n = d.json(&["neigh"]);
    let neighbours = |name: &str| iface(&n, name)["neighbours"].to_string();
    assert!(neighbours("ib0.8001").contains("10.1.0.2"), "{n}");
    assert!(!neighbours("ib0.8001").contains("10.0.0.2"), "{n}");
    assert!(neighbours("ib0").contains("10.0.0.2"), "{n}");
    let st = d.json(&["stats"]);
    // ib0 got only ARP from its own partition: none of the child's
    // multicast stream nor the child's unicast.
    assert!(counter(&st, "ib0", "rx_good_packets") < 10, "{st}");
    if fabric {
        let drops = counter(&st, "ib1.8001", "fabric_rx_pkey_mismatch_drops");
        assert_eq!(drops, 0, "{st}");
    } else {
        for name in ["ib0", "ib0.8001", "ib1", "ib1.8001"] {
            assert_eq!(counter(&st, name, "rocev2_rx_bad_icrc_drops"), 0, "{st}");
        }
        assert!(counter(&st, "ib1.8001", "rocev2_rx_packets") > 100, "{st}");
        assert!(counter(&st, "ib0", "rocev2_tx_packets") > 100, "{st}");
    }

    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no leak)"), "{out}");
    assert!(out.contains("unbalanced=0 violations=0"), "{out}");
}

/// Two soft hosts; ib0 sends to 10.0.0.9, which nobody answers ARP for, so
/// it is reachable only through a static neighbour (ib1's QP): `static_n`
/// adds it, `level` is the log level.
fn neighbour_config(static_n: bool, level: &str) -> String {
    let neighbour = if static_n {
        "[[interface.neighbour]]\nip = \"10.0.0.9\"\nqpn = 0x102\ngid = \"fe80::2:c903:0:2\"\n"
    } else {
        ""
    };
    format!(
        "[dataplane]\nlcores = [0]\nmempool_size = 2048\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nipv4 = [\"10.0.0.1/24\"]\n{neighbour}\
         [[interface]]\nname = \"ib1\"\nport = 2\nipv4 = [\"10.0.0.2/24\"]\n\
         [[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.9\"\nrate_pps = 2000\n\
         [log]\nlevel = \"{level}\"\n"
    )
}

/// ib0's entry for 10.0.0.9 in `ipoibctl neigh --json`.
fn neighbour_9(d: &Daemon) -> Option<Value> {
    let n = d.json(&["neigh"]);
    iface(&n, "ib0")["neighbours"]
        .as_array()?
        .iter()
        .find(|e| e["ip"] == "10.0.0.9")
        .cloned()
}

impl Daemon {
    /// Lines of the daemon's log (stderr) so far holding `needle`.
    fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(self.dir.join("stderr"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

#[test]
fn reload_switches_the_log_level_and_adds_and_removes_a_static_neighbour() {
    const DEBUG_LINE: &str = "DEBUG";
    const REQUEST: &str = "event=\"control_request\"";
    let mut d = Daemon::start_with("reload-neigh", Some(&neighbour_config(false, "info")));
    // At info, a request logs nothing; 10.0.0.9 is unresolved and ib0's flow
    // is dropped for want of a neighbour.
    d.wait_until("drops for want of a neighbour", |d| {
        counter(&d.json(&["stats"]), "ib0", "tx_no_neighbour_drops") > 100
    });
    assert!(
        neighbour_9(&d).is_none_or(|n| n["state"] != "permanent"),
        "{:?}",
        neighbour_9(&d)
    );
    assert_eq!(d.log_count(DEBUG_LINE), 0, "{}", d.output());
    let rx_before = counter(&d.json(&["stats"]), "ib1", "fabric_rx_messages");

    // Debug on, and the static neighbour, by SIGHUP.
    std::fs::write(d.config_file(), neighbour_config(true, "debug")).unwrap();
    d.hup();
    d.wait_log("config reloaded", 1);
    d.wait_until("10.0.0.9 as a static neighbour", |d| {
        neighbour_9(d).is_some_and(|n| n["state"] == "permanent")
    });
    let n = neighbour_9(&d).unwrap();
    // The hardware address names ib1's QP (0x102) and port GID.
    let hw = n["hwaddr"].as_str().unwrap_or_default().to_owned();
    assert!(hw.starts_with("00:00:01:02:fe:80:"), "{n}");
    assert!(hw.ends_with(":02:c9:03:00:00:00:02"), "{n}");
    // Every request is now a debug line, written before it is answered.
    let requests = d.log_count(REQUEST);
    assert!(requests > 0, "{}", d.output());
    d.ctl(&["status"]);
    assert!(d.log_count(REQUEST) > requests, "{}", d.output());
    assert!(d.log_count(DEBUG_LINE) > 0);
    // Traffic to the static neighbour flows: ib1's QP receives it.
    let drops = counter(&d.json(&["stats"]), "ib0", "tx_no_neighbour_drops");
    d.wait_until("ib0's flow to reach ib1's QP", |d| {
        counter(&d.json(&["stats"]), "ib1", "fabric_rx_messages") > rx_before + 200
    });
    let st = d.json(&["stats"]);
    assert!(
        counter(&st, "ib0", "tx_no_neighbour_drops") < drops + 50,
        "no more drops for want of a neighbour: {st}"
    );

    // Both back, through the control socket this time.
    std::fs::write(d.config_file(), neighbour_config(false, "info")).unwrap();
    let r = d.json(&["reload"]);
    let applied = r["applied"].to_string();
    assert!(
        applied.contains("log.level") && applied.contains("interface[0].neighbour"),
        "{r}"
    );
    assert!(r["refused"].as_array().is_none_or(Vec::is_empty), "{r}");
    d.wait_until("10.0.0.9 to stop being static", |d| {
        neighbour_9(d).is_none_or(|n| n["state"] != "permanent")
    });
    // Requests log nothing again: each is answered after its (absent) line.
    let requests = d.log_count(REQUEST);
    for _ in 0..3 {
        assert_eq!(d.ctl(&["status"]).0, 0);
    }
    assert_eq!(d.log_count(REQUEST), requests, "{}", d.output());
    d.wait_until("drops for want of a neighbour again", |d| {
        let a = counter(&d.json(&["stats"]), "ib0", "tx_no_neighbour_drops");
        a > drops + 100
    });

    let (code, out) = d.terminate();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(no leak)"), "{out}");
}
