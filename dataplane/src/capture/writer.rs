//! Capture sessions: `start` opens a LINKTYPE_IPOIB file and turns the
//! chosen interfaces' taps on; a writer thread drains their slots in time
//! order into the file; `stop` turns the taps off, drains and closes it.
//! All of this runs off the datapath: the lcores only fill slots.

use super::pcap::{PcapWriter, Timestamp, LINKTYPE_IPOIB};
use super::tap::{Filled, TapReader, TapStats, MAX_SNAPLEN, MIN_SNAPLEN};
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer sleeps when every tap is empty.
const IDLE: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("a capture is already running (to {0}); stop it first")]
    AlreadyRunning(PathBuf),
    #[error("no capture is running")]
    NotRunning,
    #[error("unknown interface \"{name}\" (known: {known})")]
    UnknownInterface { name: String, known: String },
    #[error("snap length {0} is out of range ({MIN_SNAPLEN}..={MAX_SNAPLEN})")]
    Snaplen(u32),
    #[error("cannot create {path}: {error}")]
    Create { path: PathBuf, error: io::Error },
    #[error("the capture writer stopped: {0}")]
    Writer(String),
}

/// What a running or finished capture did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureStatus {
    pub file: PathBuf,
    pub interfaces: Vec<String>,
    pub snaplen: u32,
    /// Records written to the file.
    pub written: u64,
    /// Frames the selected taps lost for want of a free slot, this session.
    pub drops: u64,
    /// Set when writing failed: the capture stopped there.
    pub error: Option<String>,
}

/// Per-interface counters since the daemon started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapCounters {
    pub interface: String,
    pub captured: u64,
    pub drops: u64,
}

/// What the writer thread reports while it runs.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    written: AtomicU64,
    error: Mutex<Option<String>>,
}

struct Running {
    status: CaptureStatus,
    picked: Vec<usize>,
    /// Drops of the selected taps when the session started.
    drops_before: u64,
    progress: Arc<Progress>,
    thread: JoinHandle<Vec<(usize, TapReader)>>,
}

struct State {
    /// Readers not lent to a writer thread, by interface index.
    idle: Vec<Option<TapReader>>,
    running: Option<Running>,
    session: u32,
}

/// The daemon's captures: at most one running at a time.
pub struct Capture {
    names: Vec<String>,
    counters: Vec<TapStats>,
    state: Mutex<State>,
}

impl Capture {
    /// The taps' readers, in interface order.
    pub fn new(readers: Vec<TapReader>) -> Capture {
        let names = readers.iter().map(|r| r.name().to_owned()).collect();
        let counters = readers.iter().map(TapReader::stats).collect();
        Capture {
            names,
            counters,
            state: Mutex::new(State {
                idle: readers.into_iter().map(Some).collect(),
                running: None,
                session: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn interfaces(&self) -> &[String] {
        &self.names
    }

    /// Frames captured and dropped per interface, since the daemon started.
    pub fn counters(&self) -> Vec<TapCounters> {
        self.names
            .iter()
            .zip(&self.counters)
            .map(|(n, c)| {
                let (captured, drops) = c.get();
                TapCounters {
                    interface: n.clone(),
                    captured,
                    drops,
                }
            })
            .collect()
    }

    fn drops_of(&self, picked: &[usize]) -> u64 {
        picked.iter().map(|&i| self.counters[i].get().1).sum()
    }

    /// Starts writing every interface's frames (or only `only`'s) to `path`,
    /// records cut at `snaplen` bytes (pseudo header included).
    pub fn start(
        &self,
        path: &Path,
        only: Option<&str>,
        snaplen: u32,
    ) -> Result<CaptureStatus, CaptureError> {
        if !(MIN_SNAPLEN..=MAX_SNAPLEN).contains(&snaplen) {
            return Err(CaptureError::Snaplen(snaplen));
        }
        let picked: Vec<usize> = match only {
            None => (0..self.names.len()).collect(),
            Some(name) => match self.names.iter().position(|n| n == name) {
                Some(i) => vec![i],
                None => {
                    return Err(CaptureError::UnknownInterface {
                        name: name.to_owned(),
                        known: self.names.join(", "),
                    })
                }
            },
        };
        let mut st = self.lock();
        if let Some(r) = &st.running {
            return Err(CaptureError::AlreadyRunning(r.status.file.clone()));
        }
        let create = |error| CaptureError::Create {
            path: path.to_owned(),
            error,
        };
        let file = File::create(path).map_err(create)?;
        let out = PcapWriter::with_snaplen(
            BufWriter::with_capacity(1 << 16, file),
            LINKTYPE_IPOIB,
            snaplen,
        )
        .map_err(create)?;
        st.session = st.session.wrapping_add(1).max(1);
        let session = st.session;
        if let Some(&i) = picked.iter().find(|&&i| st.idle[i].is_none()) {
            return Err(CaptureError::Writer(format!(
                "interface {} lost its tap when a writer failed to start",
                self.names[i]
            )));
        }
        let mut readers = Vec::with_capacity(picked.len());
        for &i in &picked {
            let Some(mut r) = st.idle[i].take() else {
                continue;
            };
            // Leftovers of an earlier session go back unwritten.
            while let Some(f) = r.next() {
                r.release(f);
            }
            readers.push((i, r));
        }
        let drops_before = self.drops_of(&picked);
        for (_, r) in &readers {
            r.set_session(session, snaplen);
        }
        let progress = Arc::new(Progress::default());
        let thread = {
            let progress = progress.clone();
            let spawned = std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || write_loop(out, readers, session, &progress));
            match spawned {
                Ok(t) => t,
                Err(e) => {
                    // The readers went with the closure: this interface
                    // set cannot capture again, but nothing else breaks.
                    return Err(CaptureError::Writer(format!(
                        "cannot start the writer: {e}"
                    )));
                }
            }
        };
        let status = CaptureStatus {
            file: path.to_owned(),
            interfaces: picked.iter().map(|&i| self.names[i].clone()).collect(),
            snaplen,
            written: 0,
            drops: 0,
            error: None,
        };
        st.running = Some(Running {
            status: status.clone(),
            picked,
            drops_before,
            progress,
            thread,
        });
        Ok(status)
    }

    fn status_of(&self, r: &Running) -> CaptureStatus {
        CaptureStatus {
            written: r.progress.written.load(Ordering::Relaxed),
            drops: self.drops_of(&r.picked).saturating_sub(r.drops_before),
            error: r.progress.error.lock().ok().and_then(|e| e.clone()),
            ..r.status.clone()
        }
    }

    /// The running capture, if any.
    pub fn status(&self) -> Option<CaptureStatus> {
        let st = self.lock();
        st.running.as_ref().map(|r| self.status_of(r))
    }

    /// Turns the taps off, writes what they still hold and closes the file.
    pub fn stop(&self) -> Result<CaptureStatus, CaptureError> {
        let mut st = self.lock();
        let Running {
            status,
            picked,
            drops_before,
            progress,
            thread,
        } = st.running.take().ok_or(CaptureError::NotRunning)?;
        progress.stop.store(true, Ordering::Release);
        thread.thread().unpark();
        let readers = thread
            .join()
            .map_err(|_| CaptureError::Writer("the writer panicked".into()))?;
        for (i, reader) in readers {
            st.idle[i] = Some(reader);
        }
        // After the join: the final count of written records.
        Ok(CaptureStatus {
            written: progress.written.load(Ordering::Relaxed),
            drops: self.drops_of(&picked).saturating_sub(drops_before),
            error: progress.error.lock().ok().and_then(|e| e.clone()),
            ..status
        })
    }
}

/// Pops each reader's next slot of `session` into `heads` (others are
/// stale, from an earlier session: given back unwritten).
fn refill(readers: &mut [(usize, TapReader)], heads: &mut [Option<Filled>], session: u32) {
    for ((_, r), h) in readers.iter_mut().zip(heads.iter_mut()) {
        while h.is_none() {
            match r.next() {
                Some(f) if f.session == session => *h = Some(f),
                Some(f) => r.release(f),
                None => break,
            }
        }
    }
}

/// The writer thread: records in time order across interfaces, flushed
/// whenever the taps run dry, until told to stop; then the taps are turned
/// off and what they hold is written.
fn write_loop(
    mut out: PcapWriter<BufWriter<File>>,
    mut readers: Vec<(usize, TapReader)>,
    session: u32,
    progress: &Progress,
) -> Vec<(usize, TapReader)> {
    let error = &progress.error;
    let mut heads: Vec<Option<Filled>> = readers.iter().map(|_| None).collect();
    let mut dirty = false;
    let mut stopping = false;
    let mut failed = false;
    loop {
        refill(&mut readers, &mut heads, session);
        let first = heads
            .iter()
            .enumerate()
            .filter_map(|(k, h)| h.as_ref().map(|f| (f.ts, k)))
            .min_by_key(|&(ts, _): &(Timestamp, usize)| ts);
        let Some((_, k)) = first else {
            if dirty && !failed {
                if let Err(e) = out.flush() {
                    fail(&readers, error, &e);
                    failed = true;
                }
                dirty = false;
            }
            if stopping {
                break;
            }
            if progress.stop.load(Ordering::Acquire) {
                // Off first, then one more pass: a burst that saw the tap
                // on has finished filling its slots by the time we look.
                for (_, r) in &readers {
                    r.set_session(0, MAX_SNAPLEN);
                }
                stopping = true;
                std::thread::yield_now();
                continue;
            }
            std::thread::park_timeout(IDLE);
            continue;
        };
        let f = heads[k].take().expect("picked a present head");
        if !failed {
            let (orig_len, pseudo, frame) = readers[k].1.record(&f);
            match out.write_cut(f.ts, orig_len, &[pseudo, frame]) {
                Ok(()) => {
                    progress.written.fetch_add(1, Ordering::Relaxed);
                    dirty = true;
                }
                Err(e) => {
                    fail(&readers, error, &e);
                    failed = true;
                }
            }
        }
        readers[k].1.release(f);
    }
    for ((_, r), h) in readers.iter_mut().zip(heads) {
        if let Some(f) = h {
            r.release(f);
        }
    }
    readers
}

/// A write error ends the session: taps off, the error kept for `stop`.
fn fail(readers: &[(usize, TapReader)], error: &Mutex<Option<String>>, e: &io::Error) {
    for (_, r) in readers {
        r.set_session(0, MAX_SNAPLEN);
    }
    tracing::warn!("capture stopped: cannot write: {e}");
    if let Ok(mut slot) = error.lock() {
        *slot = Some(format!("cannot write: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::pcap::PcapReader;
    use crate::capture::tap::{tap, Tap};
    use crate::mem::{HugepageMode, Mempool, MempoolConfig};
    use crate::provider::SendWr;
    use crate::wire::Gid;
    use std::time::Instant;

    fn pool() -> &'static Mempool {
        Mempool::new(MempoolConfig {
            name: "writer-test".into(),
            count: 64,
            buf_size: 2176,
            hugepages: HugepageMode::Off,
        })
        .unwrap()
    }

    fn send(pool: &'static Mempool, tap: &mut Tap, marker: u8) {
        let Some(_) = std::num::NonZeroU32::new(tap.session()) else {
            return;
        };
        let mut m = pool.alloc().unwrap();
        m.append(5).unwrap().copy_from_slice(&[8, 0, 0, 0, marker]);
        let wr = SendWr {
            mbuf: m,
            ah: (),
            remote_qpn: 0x102,
            remote_qkey: 0x0b1b,
        };
        tap.record_tx(tap.session(), &[wr], |_| Some(Gid([marker; 16])));
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("capture-{}-{name}.pcap", std::process::id()))
    }

    fn wait_written(c: &Capture, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.status().map_or(0, |s| s.written) < n {
            assert!(
                Instant::now() < deadline,
                "the writer never wrote {n} records"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_session_writes_the_selected_interfaces_in_time_order() {
        let pool = pool();
        let (mut a, ra) = tap("ib0", 0x101, Gid::default(), 8);
        let (mut b, rb) = tap("ib1", 0x102, Gid::default(), 8);
        let c = Capture::new(vec![ra, rb]);
        let path = temp("order");
        send(pool, &mut a, 0xee);
        assert_eq!(c.counters()[0].captured, 0, "off: nothing copied");
        let st = c.start(&path, None, MAX_SNAPLEN).unwrap();
        assert_eq!(st.interfaces, ["ib0", "ib1"]);
        send(pool, &mut a, 1);
        send(pool, &mut b, 2);
        send(pool, &mut a, 3);
        wait_written(&c, 3);
        let done = c.stop().unwrap();
        assert_eq!((done.written, done.drops, done.error), (3, 0, None));
        send(pool, &mut a, 0xee);
        let file = File::open(&path).unwrap();
        let mut r = PcapReader::new(file).unwrap();
        assert_eq!(r.linktype(), LINKTYPE_IPOIB);
        let markers: Vec<u8> = r.by_ref().map(|rec| rec.unwrap().data[44]).collect();
        assert_eq!(markers, [1, 2, 3]);

        // Only ib1, cut short; the file is replaced.
        c.start(&path, Some("ib1"), MIN_SNAPLEN).unwrap();
        send(pool, &mut a, 4);
        send(pool, &mut b, 5);
        wait_written(&c, 1);
        assert_eq!(c.stop().unwrap().interfaces, ["ib1"]);
        let recs: Vec<_> = PcapReader::new(File::open(&path).unwrap())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].data[44], 5);
        assert_eq!(&recs[0].data[24..40], &[5; 16], "destination GID");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_requests_are_clear_errors() {
        let (_a, ra) = tap("ib0", 0x101, Gid::default(), 4);
        let c = Capture::new(vec![ra]);
        assert!(matches!(c.stop(), Err(CaptureError::NotRunning)));
        let path = temp("errors");
        let e = c.start(&path, Some("ib7"), MAX_SNAPLEN).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown interface \"ib7\" (known: ib0)"),
            "{e}"
        );
        let e = c.start(&path, None, 10).unwrap_err();
        assert!(e.to_string().contains("snap length 10"), "{e}");
        let e = c
            .start(Path::new("/nonexistent-dir/x.pcap"), None, MAX_SNAPLEN)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot create /nonexistent-dir/x.pcap"),
            "{e}"
        );
        c.start(&path, None, MAX_SNAPLEN).unwrap();
        let e = c.start(&path, None, MAX_SNAPLEN).unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        c.stop().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_write_error_ends_the_session_and_turns_the_taps_off() {
        let pool = pool();
        let (mut a, ra) = tap("ib0", 0x101, Gid::default(), 64);
        let c = Capture::new(vec![ra]);
        // Writes to /dev/full fail with ENOSPC once the buffer is flushed.
        c.start(Path::new("/dev/full"), None, MAX_SNAPLEN).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.session() != 0 {
            assert!(Instant::now() < deadline, "the taps stayed on");
            send(pool, &mut a, 1);
            std::thread::yield_now();
        }
        let done = c.stop().unwrap();
        let error = done.error.expect("the error is reported");
        assert!(error.starts_with("cannot write"), "{error}");
        // The interface can capture again afterwards.
        let path = temp("after-error");
        c.start(&path, None, MAX_SNAPLEN).unwrap();
        send(pool, &mut a, 2);
        wait_written(&c, 1);
        assert_eq!(c.stop().unwrap().error, None);
        let _ = std::fs::remove_file(&path);
    }
}
