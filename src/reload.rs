//! Configuration reload (SIGHUP, `ipoibctl reload`): the file is read and
//! validated again, compared key by key with the running configuration, and
//! what can change live is applied — multicast groups through the join
//! engines, static neighbours, flow rates, the log level, the stats
//! interval. Every other changed key is refused by name and keeps its
//! running value; an invalid file changes nothing.

use crate::control_plane::{ControlCtx, ControlJob};
use crate::logging::LogControl;
use crate::resolution::StaticNeighbour;
use ipoib_config::Config;
use ipoib_dataplane::lcore::RateControl;
use ipoib_dataplane::wire::{mgid_for_ip, Gid};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// MGID → IP group, shared with the control socket to name groups.
pub type GroupNames = Arc<Mutex<Vec<(Gid, IpAddr)>>>;

/// Longest wait for the control thread to apply group and neighbour changes.
const CONTROL_WAIT: Duration = Duration::from_secs(30);

/// Keys (indices left out) that apply while running.
const LIVE: [&str; 6] = [
    "interface.groups",
    "interface.sendonly",
    "interface.neighbour",
    "traffic.rate_pps",
    "log.level",
    "run.stats_interval_ms",
];

/// Keys that need the control plane to apply.
const NEEDS_CONTROL: [&str; 2] = ["interface.groups", "interface.neighbour"];

/// `interface[1].neighbour[0].qpn` → `interface.neighbour.qpn`.
fn pattern(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The live key `key` falls under, if any.
fn live_key(key: &str) -> Option<&'static str> {
    let p = pattern(key);
    LIVE.iter()
        .copied()
        .find(|l| p == *l || p.starts_with(&format!("{l}.")))
}

/// Every key whose value differs, as `section.key` / `interface[1].mtu`
/// paths; an array of tables that changed length is one key.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let parse = |c: &Config| c.to_toml().parse::<toml::Table>().unwrap_or_default();
    let mut out = Vec::new();
    diff(
        &toml::Value::Table(parse(old)),
        &toml::Value::Table(parse(new)),
        "",
        &mut out,
    );
    out
}

fn diff(old: &toml::Value, new: &toml::Value, path: &str, out: &mut Vec<String>) {
    use toml::Value::{Array, Table};
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Table(a), Table(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(x, y, &join(k), out),
                    _ => out.push(join(k)),
                }
            }
        }
        (Array(a), Array(b))
            if a.len() == b.len() && a.iter().chain(b).all(|v| v.is_table()) && !a.is_empty() =>
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ if old != new => out.push(path.to_owned()),
        _ => {}
    }
}

/// What a reload would do: keys to apply live, keys refused with why.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub live: Vec<String>,
    pub refused: Vec<(String, String)>,
}

/// Sorts the changed keys; `has_control` is false for providers that run no
/// control plane (their groups and neighbours cannot change).
pub fn plan(old: &Config, new: &Config, has_control: bool) -> Plan {
    let mut p = Plan::default();
    for key in changed_keys(old, new) {
        match live_key(&key) {
            Some(l) if !has_control && NEEDS_CONTROL.contains(&l) => p.refused.push((
                key,
                format!(
                    "the {} provider runs no control plane",
                    old.provider.kind.as_str()
                ),
            )),
            Some(_) => p.live.push(key),
            None => p.refused.push((key, "needs a restart".into())),
        }
    }
    p
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<String>,
    pub refused: Vec<(String, String)>,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        let refused: Vec<Value> = self
            .refused
            .iter()
            .map(|(k, why)| json!({"key": k, "reason": why}))
            .collect();
        json!({"applied": self.applied, "refused": refused})
    }

    /// Logs the one line of this reload's outcome.
    fn log(&self, file: &str) {
        let refused: Vec<String> = self
            .refused
            .iter()
            .map(|(k, why)| format!("{k} ({why})"))
            .collect();
        if refused.is_empty() {
            tracing::info!(file, applied = ?self.applied, "config reloaded");
        } else {
            tracing::warn!(
                file,
                applied = ?self.applied,
                refused = ?refused,
                "config reloaded in part: refused keys keep their running values"
            );
        }
    }
}

/// Group and neighbour changes of one interface, applied on the control thread.
struct IfaceChange {
    name: String,
    leave: Vec<Gid>,
    join: Vec<Gid>,
    groups_changed: bool,
    statics: Option<Vec<StaticNeighbour>>,
}

/// Everything a reload may touch.
pub struct Reloader {
    path: Option<PathBuf>,
    /// The running configuration (refused keys keep their old values).
    running: Mutex<Config>,
    /// `--duration` given on the command line wins over the file.
    duration_override: Option<f64>,
    log: LogControl,
    rates: Vec<Option<RateControl>>,
    jobs: Option<SyncSender<ControlJob>>,
    names: GroupNames,
    pkeys: Vec<u16>,
    stats_interval_ms: AtomicU32,
}

impl Reloader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: Option<PathBuf>,
        running: Config,
        duration_override: Option<f64>,
        log: LogControl,
        rates: Vec<Option<RateControl>>,
        jobs: Option<SyncSender<ControlJob>>,
        names: GroupNames,
        pkeys: Vec<u16>,
    ) -> Reloader {
        Reloader {
            path,
            stats_interval_ms: AtomicU32::new(running.run.stats_interval_ms),
            running: Mutex::new(running),
            duration_override,
            log,
            rates,
            jobs,
            names,
            pkeys,
        }
    }

    /// The running log level's control.
    pub fn log(&self) -> &LogControl {
        &self.log
    }

    /// The stats line interval in force.
    pub fn stats_interval(&self) -> Duration {
        Duration::from_millis(self.stats_interval_ms.load(Ordering::Relaxed).into())
    }

    /// Re-reads the file and applies what can change live. An error (no
    /// file, invalid file) means nothing changed; it is logged too.
    pub fn reload(&self) -> Result<Outcome, String> {
        let r = self.try_reload();
        if let Err(e) = &r {
            tracing::error!(error = %e, "config reload refused: the running configuration stays");
        }
        r
    }

    fn try_reload(&self) -> Result<Outcome, String> {
        let path = self
            .path
            .as_ref()
            .ok_or("no configuration file to reload: ipoibd runs the embedded default")?;
        let mut new = ipoib_config::load_file(path).map_err(|e| e.to_string())?;
        if let Some(d) = self.duration_override {
            new.run.duration_s = d;
        }
        let mut running = self
            .running
            .lock()
            .map_err(|_| "a previous reload failed half-way")?;
        let plan = plan(&running, &new, self.jobs.is_some());
        let mut out = Outcome {
            applied: Vec::new(),
            refused: plan.refused,
        };
        let mut next = running.clone();
        let live = |pat: &'static str| {
            plan.live
                .iter()
                .filter(move |k| pattern(k).starts_with(pat))
        };

        // Groups and neighbours: one job on the control thread.
        let mut changes = Vec::new();
        for (i, (old_if, new_if)) in running.interfaces.iter().zip(&new.interfaces).enumerate() {
            let prefix = format!("interface[{i}].");
            let touched = |what: &str| {
                plan.live
                    .iter()
                    .any(|k| k.starts_with(&format!("{prefix}{what}")))
            };
            let pkey = self.pkeys.get(i).copied().unwrap_or(old_if.pkey);
            let mgids = |ips: &[IpAddr]| -> Vec<Gid> {
                ips.iter()
                    .filter_map(|ip| mgid_for_ip(*ip, pkey, 2).ok())
                    .collect()
            };
            if touched("sendonly") || touched("groups") {
                if let Ok(mut names) = self.names.lock() {
                    for ip in new_if.groups.iter().chain(&new_if.sendonly) {
                        if let Ok(g) = mgid_for_ip(*ip, pkey, 2) {
                            if !names.iter().any(|(m, _)| *m == g) {
                                names.push((g, *ip));
                            }
                        }
                    }
                }
            }
            if touched("sendonly") {
                next.interfaces[i].sendonly = new_if.sendonly.clone();
                out.applied.push(format!("{prefix}sendonly"));
            }
            let groups_changed = touched("groups");
            let statics = touched("neighbour").then(|| {
                new_if
                    .neighbours
                    .iter()
                    .map(|n| StaticNeighbour {
                        ip: n.ip,
                        qpn: n.qpn,
                        gid: Gid::from(n.gid),
                    })
                    .collect()
            });
            if groups_changed || statics.is_some() {
                let (old_g, new_g) = (mgids(&old_if.groups), mgids(&new_if.groups));
                changes.push((
                    i,
                    IfaceChange {
                        name: old_if.name.clone(),
                        leave: old_g
                            .iter()
                            .filter(|g| !new_g.contains(g))
                            .copied()
                            .collect(),
                        join: new_g
                            .iter()
                            .filter(|g| !old_g.contains(g))
                            .copied()
                            .collect(),
                        groups_changed,
                        statics,
                    },
                ));
            }
        }
        if !changes.is_empty() {
            let (idx, list): (Vec<usize>, Vec<IfaceChange>) = changes.into_iter().unzip();
            match self
                .on_control(move |ctx| list.iter().map(|c| apply_iface(ctx, c)).collect::<Vec<_>>())
            {
                Ok(results) => {
                    for (i, (groups, statics)) in idx.into_iter().zip(results) {
                        let prefix = format!("interface[{i}].");
                        match groups {
                            Some(Ok(())) => {
                                next.interfaces[i].groups = new.interfaces[i].groups.clone();
                                out.applied.push(format!("{prefix}groups"));
                            }
                            Some(Err(e)) => out.refused.push((format!("{prefix}groups"), e)),
                            None => {}
                        }
                        match statics {
                            Some(Ok(())) => {
                                next.interfaces[i].neighbours =
                                    new.interfaces[i].neighbours.clone();
                                out.applied.push(format!("{prefix}neighbour"));
                            }
                            Some(Err(e)) => out.refused.push((format!("{prefix}neighbour"), e)),
                            None => {}
                        }
                    }
                }
                Err(e) => {
                    for k in live("interface.groups").chain(live("interface.neighbour")) {
                        out.refused.push((k.clone(), e.clone()));
                    }
                }
            }
        }

        for key in live("traffic.rate_pps") {
            let Some(j) = index_of(key) else { continue };
            match self.rates.get(j).and_then(Option::as_ref) {
                Some(rate) => {
                    rate.set(new.traffic[j].rate_pps);
                    next.traffic[j].rate_pps = new.traffic[j].rate_pps;
                    out.applied.push(key.clone());
                }
                None => out
                    .refused
                    .push((key.clone(), "this flow is not running".into())),
            }
        }
        if plan.live.iter().any(|k| k == "log.level") {
            match self.log.set_level(new.log.level) {
                Ok(()) => {
                    next.log.level = new.log.level;
                    out.applied.push("log.level".into());
                }
                Err(e) => out.refused.push(("log.level".into(), e)),
            }
        }
        if plan.live.iter().any(|k| k == "run.stats_interval_ms") {
            self.stats_interval_ms
                .store(new.run.stats_interval_ms, Ordering::Relaxed);
            next.run.stats_interval_ms = new.run.stats_interval_ms;
            out.applied.push("run.stats_interval_ms".into());
        }
        *running = next;
        out.log(&path.display().to_string());
        Ok(out)
    }

    fn on_control<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ControlCtx<'_>) -> T + Send + 'static,
    ) -> Result<T, String> {
        let jobs = self.jobs.as_ref().ok_or("no control plane")?;
        let (tx, rx) = mpsc::channel();
        let job: ControlJob = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "the control thread is busy: reload again".to_string(),
            TrySendError::Disconnected(_) => "the control plane has stopped".to_string(),
        })?;
        rx.recv_timeout(CONTROL_WAIT)
            .map_err(|_| "the control thread did not answer".to_string())
    }
}

/// `traffic[3].rate_pps` → 3.
fn index_of(key: &str) -> Option<usize> {
    let open = key.find('[')?;
    let close = key.find(']')?;
    key.get(open + 1..close)?.parse().ok()
}

type IfaceResult = (Option<Result<(), String>>, Option<Result<(), String>>);

/// On the control thread: new full-member groups and static neighbours of
/// one interface. Groups that address resolution needs are never left.
fn apply_iface(ctx: &mut ControlCtx<'_>, c: &IfaceChange) -> IfaceResult {
    let groups = c.groups_changed.then(|| {
        let idx = ctx
            .engines
            .iter()
            .position(|(n, _)| *n == c.name)
            .ok_or_else(|| format!("{} has no multicast engine", c.name))?;
        let needed: Vec<Gid> = ctx
            .resolvers
            .iter()
            .filter(|r| r.name == c.name)
            .flat_map(|r| r.multicast_groups())
            .collect();
        let wanted = ctx
            .desired
            .get_mut(idx)
            .ok_or_else(|| format!("{} has no group list", c.name))?;
        wanted.retain(|g| !c.leave.contains(g) || needed.contains(g));
        for g in &c.join {
            if !wanted.contains(g) {
                wanted.push(*g);
            }
        }
        wanted.sort();
        let r = ctx.engines[idx].1.restart(wanted);
        tracing::info!(
            interface = %c.name,
            added = r.added,
            promoted = r.promoted,
            left = r.removed.left,
            "groups changed by reload"
        );
        Ok(())
    });
    let statics = c.statics.as_ref().map(|list| {
        ctx.resolvers
            .iter_mut()
            .find(|r| r.name == c.name)
            .ok_or_else(|| format!("{} resolves no neighbours", c.name))?
            .set_statics(list)
    });
    (groups, statics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[dataplane]\nlcores = [0]\n[[interface]]\nname = \"ib0\"\nport = 1\n\
             ipv4 = [\"10.0.0.1/24\"]\n{extra}"
        );
        ipoib_config::from_str(&text, "t.toml").unwrap()
    }

    #[test]
    fn keys_are_named_with_their_index() {
        let a = cfg("groups = [\"239.1.1.1\"]\nmtu = 2044\n");
        let b = cfg("groups = [\"239.1.1.2\"]\nmtu = 1500\n");
        assert_eq!(
            changed_keys(&a, &b),
            vec!["interface[0].groups", "interface[0].mtu"]
        );
        assert!(changed_keys(&a, &a).is_empty());
    }

    #[test]
    fn live_keys_apply_others_are_refused_by_name() {
        let a = cfg("[[interface.neighbour]]\nip = \"10.0.0.2\"\nqpn = 0x102\ngid = \"fe80::2\"\n[log]\nlevel = \"info\"\n");
        let b = cfg("groups = [\"239.1.1.1\"]\n[[interface.neighbour]]\nip = \"10.0.0.2\"\nqpn = 0x103\ngid = \"fe80::2\"\n[control]\nneigh_queue = 5\n[log]\nlevel = \"debug\"\n");
        let p = plan(&a, &b, true);
        assert_eq!(
            p.live,
            vec![
                "interface[0].groups",
                "interface[0].neighbour[0].qpn",
                "log.level"
            ]
        );
        assert_eq!(
            p.refused,
            vec![(
                "control.neigh_queue".to_string(),
                "needs a restart".to_string()
            )]
        );
        // Without a control plane, groups and neighbours cannot change.
        let p = plan(&a, &b, false);
        assert_eq!(p.live, vec!["log.level"]);
        assert_eq!(p.refused.len(), 3);
    }

    #[test]
    fn added_interfaces_and_flows_are_one_refused_key() {
        let a = cfg("");
        let b = cfg("[[interface]]\nname = \"ib1\"\nport = 2\n");
        assert_eq!(changed_keys(&a, &b), vec!["interface"]);
        let c = cfg("[[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\n");
        let d = cfg("[[traffic]]\nfrom = \"ib0\"\nto = \"10.0.0.2\"\nrate_pps = 5\n");
        assert_eq!(changed_keys(&a, &c), vec!["traffic"]);
        let p = plan(&c, &d, false);
        assert_eq!(p.live, vec!["traffic[0].rate_pps"]);
        assert!(p.refused.is_empty());
    }

    #[test]
    fn patterns_and_indices() {
        assert_eq!(
            pattern("interface[12].neighbour[0].qpn"),
            "interface.neighbour.qpn"
        );
        assert_eq!(
            live_key("interface[1].neighbour"),
            Some("interface.neighbour")
        );
        assert_eq!(live_key("interface[1].groupsx"), None);
        assert_eq!(index_of("traffic[3].rate_pps"), Some(3));
        assert_eq!(index_of("log.level"), None);
    }
}
