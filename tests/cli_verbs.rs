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
