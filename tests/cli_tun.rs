//! ipoibd with a TUN device it cannot create: one line naming the interface,
//! the device and the cause, and exit status 2 (the working path runs as
//! root in tests/netns_tun.sh).

use std::process::Command;

fn run_with(config: &str) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("ipoibd-cli-tun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.toml", config.len()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .args(["--no-socket", "--duration", "0.1", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(mtu: u16, tun: &str) -> String {
    format!(
        "[dataplane]\nhugepages = \"off\"\nmempool_size = 1024\n[provider]\nkind = \"null\"\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nmtu = {mtu}\nipv4 = [\"10.0.0.1/24\"]\n\
         tun = {{ name = \"{tun}\" }}\n"
    )
}

#[test]
fn a_device_name_taken_by_another_kind_of_device_is_one_line_and_status_2() {
    // "lo" always exists and is not a TUN device; without privileges the
    // creation is refused first, and without /dev/net/tun it cannot start.
    let (code, out, err) = run_with(&config(1500, "lo"));
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let line = err.trim_end();
    assert!(!line.contains('\n'), "one line: {err}");
    assert!(
        line.starts_with("ipoibd: error: interface ib0: TUN device lo: "),
        "{line}"
    );
    assert!(
        line.ends_with("(a device of that name exists and is not a TUN device)")
            || line.ends_with("(needs root or CAP_NET_ADMIN)")
            || line.contains("/dev/net/tun is missing"),
        "{line}"
    );
}

#[test]
fn an_mtu_larger_than_a_buffer_is_refused_before_the_device_is_made() {
    let (code, out, err) = run_with(&config(4092, "ipoibtest0"));
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("interface ib0: TUN device ipoibtest0: mtu 4092 exceeds")
            && err.contains("raise dataplane.buf_size to at least 4220"),
        "{err}"
    );
}
