//! `ipoibd` with `provider.kind = "verbs"` on machines without RDMA: one
//! line that says what to do, exit status 2, no panic.

use std::process::Command;

fn config(dir: &std::path::Path, device: &str) -> std::path::PathBuf {
    let path = dir.join("verbs.toml");
    std::fs::write(
        &path,
        format!(
            "[provider]\nkind = \"verbs\"\n[provider.verbs]\ndevice = \"{device}\"\ngid_index = 1\n\
             [[interface]]\nname = \"ib0\"\nport = 1\nmtu = 1020\nipv4 = [\"10.99.0.2/24\"]\n"
        ),
    )
    .unwrap();
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-verbs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs ipoibd on `cfg`; returns (status, stderr lines).
fn ipoibd(cfg: &std::path::Path, env: &[(&str, &str)]) -> (i32, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .arg("--config")
        .arg(cfg)
        .args(["--no-socket", "--duration", "1"])
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("ipoibd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        // libibverbs itself may warn about drivers it cannot load.
        .filter(|l| !l.starts_with("libibverbs: "))
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn a_missing_libibverbs_names_the_package() {
    let dir = temp_dir("nolib");
    let cfg = config(&dir, "rxe0");
    let (code, lines) = ipoibd(
        &cfg,
        &[("RDMA_SYS_LIBIBVERBS", "/nonexistent/libibverbs.so.1")],
    );
    assert_eq!(code, 2, "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(lines[0].starts_with("ipoibd: error: verbs: "), "{lines:?}");
    assert!(
        lines[0].contains("install the Debian package libibverbs1"),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn this_machine_gets_the_line_that_fits_it() {
    let dir = temp_dir("host");
    let cfg = config(&dir, "nonexistent-dev0");
    let (code, lines) = ipoibd(&cfg, &[]);
    assert_eq!(code, 2, "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    // What this machine has, found independently of ipoibd.
    let want = match rdma_sys::devices() {
        Err(rdma_sys::OpenError::Load(_)) => "install the Debian package libibverbs1",
        Ok(d) if d.is_empty() => "rdma link add rxe0 type rxe netdev IFACE",
        Ok(_) => "no device nonexistent-dev0; present: ",
        Err(e) => panic!("listing devices failed: {e}"),
    };
    assert!(lines[0].contains(want), "want {want:?} in {lines:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `ipoibd pktgen` with `args`; returns (status, stderr lines).
fn pktgen(args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipoibd"))
        .arg("pktgen")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("ipoibd pktgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("libibverbs: "))
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

/// `ipoibd pktgen` on the verbs provider, as generator and as sink, from a
/// verbs configuration or with `--provider verbs` over another one: the
/// daemon's own one-line error for what this machine lacks, status 2.
#[test]
fn pktgen_on_verbs_gives_the_daemons_line() {
    let dir = temp_dir("pktgen");
    let cfg = config(&dir, "nonexistent-dev0");
    let other = dir.join("rocev2.toml");
    std::fs::write(
        &other,
        "[provider]\nkind = \"rocev2\"\n[provider.verbs]\ndevice = \"nonexistent-dev0\"\n\
         [[interface]]\nname = \"ib0\"\nport = 1\nmtu = 1020\nlocal_ip = \"127.0.0.1\"\n\
         ipv4 = [\"10.99.0.2/24\"]\n",
    )
    .unwrap();
    for env in [
        vec![("RDMA_SYS_LIBIBVERBS", "/nonexistent/libibverbs.so.1")],
        vec![],
    ] {
        let (code, daemon) = ipoibd(&cfg, &env);
        assert_eq!(code, 2, "{daemon:?}");
        let want = daemon[0]
            .strip_prefix("ipoibd: error: ")
            .expect("the daemon's error line");
        let (c, o) = (cfg.to_str().unwrap(), other.to_str().unwrap());
        for args in [
            vec!["--config", c, "-q", "--to", "10.99.0.3", "--count", "10"],
            vec!["--config", c, "-q", "--sink", "--duration", "1"],
            vec![
                "--config",
                o,
                "--provider",
                "verbs",
                "-q",
                "--to",
                "10.99.0.3",
            ],
        ] {
            let (code, lines) = pktgen(&args, &env);
            assert_eq!(code, 2, "{args:?}: {lines:?}");
            assert_eq!(lines.len(), 1, "{args:?}: one line: {lines:?}");
            assert_eq!(
                lines[0].strip_prefix("ipoibd pktgen: error: "),
                Some(want),
                "{args:?}: the daemon says {daemon:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
