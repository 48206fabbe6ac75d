//! The container's log writer: every thread appends its lines to a buffer of its own, and one
//! writer thread gathers the buffers and writes them to standard output.
//!
//! A request never waits for standard output: when its reader stalls, a thread's buffer
//! fills up to [`THREAD_BYTES`] and further lines are dropped and counted. tracing-appender's
//! writer (used before) sent every line through one channel, each line a fresh allocation
//! freed on the writer thread, and every thread touched the channel's shared state per line;
//! at 100 000 lines a second that cost a pod more than 10 % of its throughput. No crate
//! gathers per-thread buffers like this, so it is written here.
//!
//! Lines of one thread stay in order. Lines of different threads are written in the order
//! the writer gathers them, at most [`LINGER`] apart: each line carries its own timestamp.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use thread_local::ThreadLocal;
use tracing_subscriber::fmt::MakeWriter;

use crate::sync::lock;

/// Bytes of lines one thread may have waiting before its new lines are dropped: at about
/// 300 bytes a line, some 28 000 lines, more than a second of a saturated worker's access log.
pub const THREAD_BYTES: usize = 8 * 1024 * 1024;

/// How long the writer thread rests after writing. While it rests, lines only gather, so a
/// busy pod makes one write(2) and wakes the thread once per rest, not once per line. A line
/// on a quiet pod finds the thread asleep and wakes it: it is written at once.
const LINGER: Duration = Duration::from_millis(1);

/// What the writer keeps of a batch's memory between rounds; a larger batch (gathered while
/// standard output stalled) is given back.
const KEPT_BATCH_BYTES: usize = 256 * 1024;

/// Hands each log line to the calling thread's buffer (a [`MakeWriter`] for tracing).
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written every line already given.
#[must_use = "lines stop being written when the guard is dropped"]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    buffers: ThreadLocal<Mutex<Vec<u8>>>,
    /// Bytes a thread's buffer may hold ([`THREAD_BYTES`] outside tests).
    limit: usize,
    dropped: AtomicU64,
    /// The writer thread found nothing to write and is parked, or about to park.
    idle: AtomicBool,
    stopping: AtomicBool,
    writer: OnceLock<Thread>,
}

/// Starts the writer thread (`log-writer`) writing to `out`; each thread's buffer holds at
/// most `limit` bytes.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    limit: usize,
) -> io::Result<(LogWriter, WriterGuard)> {
    let shared = Arc::new(Shared {
        buffers: ThreadLocal::new(),
        limit,
        dropped: AtomicU64::new(0),
        idle: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        writer: OnceLock::new(),
    });
    let thread = thread::Builder::new().name("log-writer".into()).spawn({
        let shared = Arc::clone(&shared);
        move || shared.run(out)
    })?;
    let _ = shared.writer.set(thread.thread().clone());
    Ok((
        LogWriter {
            shared: Arc::clone(&shared),
        },
        WriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

impl LogWriter {
    /// Lines dropped so far because a thread's buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = ThreadLines<'a>;

    fn make_writer(&'a self) -> ThreadLines<'a> {
        ThreadLines {
            shared: &self.shared,
        }
    }
}

/// A writer into the calling thread's buffer; each `write` is expected to be whole lines, as
/// tracing's layers and the access line write them.
pub struct ThreadLines<'a> {
    shared: &'a Shared,
}

impl Write for ThreadLines<'_> {
    fn write(&mut self, lines: &[u8]) -> io::Result<usize> {
        self.shared.push(lines);
        Ok(lines.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn push(&self, lines: &[u8]) {
        let mut first = false;
        let buffer = self.buffers.get_or(|| {
            first = true;
            Mutex::new(Vec::new())
        });
        {
            let mut pending = lock(buffer);
            if pending.len() + lines.len() > self.limit {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pending.extend_from_slice(lines);
        }
        // The writer sets `idle` before it looks at the buffers a last time, under their
        // locks: either it saw these lines, or this load sees `idle`. A buffer it has not seen
        // yet (the thread's first line) wakes it regardless.
        if first || (self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst)) {
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }

    /// The writer thread: gathers every thread's lines and writes them in one write, rests,
    /// and parks when there is nothing to write.
    fn run<W: Write>(&self, mut out: W) {
        let mut batch = Vec::new();
        loop {
            let stopping = self.stopping.load(Ordering::Acquire);
            if self.gather(&mut batch) {
                // A failed write loses these lines, as tracing's own writers do.
                let _ = out.write_all(&batch).and_then(|()| out.flush());
                batch.clear();
                batch.shrink_to(KEPT_BATCH_BYTES);
                if !stopping {
                    thread::sleep(LINGER);
                }
                continue;
            }
            if stopping {
                return;
            }
            self.idle.store(true, Ordering::SeqCst);
            if self.pending() {
                self.idle.store(false, Ordering::SeqCst);
                continue;
            }
            thread::park();
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    /// Moves every thread's lines into `batch`; false when there were none.
    fn gather(&self, batch: &mut Vec<u8>) -> bool {
        for buffer in self.buffers.iter() {
            let mut pending = lock(buffer);
            batch.extend_from_slice(&pending);
            pending.clear();
        }
        !batch.is_empty()
    }

    fn pending(&self) -> bool {
        self.buffers.iter().any(|buffer| !lock(buffer).is_empty())
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::mpsc;
    use std::time::Instant;

    /// A stdout nobody reads (a stalled log collector, a full pipe): every write waits
    /// until the test lets go.
    struct Stalled(mpsc::Receiver<()>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stdout that records each write; the first one waits until the test lets go.
    #[derive(Clone)]
    struct Recording {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        first: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
    }

    impl Recording {
        fn new(first: Option<mpsc::Receiver<()>>) -> Self {
            Self {
                writes: Default::default(),
                first: Arc::new(Mutex::new(first)),
            }
        }

        fn writes(&self) -> Vec<Vec<u8>> {
            lock(&self.writes).clone()
        }

        /// Waits (up to 10 s) until `bytes` bytes were written.
        fn wait_for(&self, bytes: usize) {
            let waited = Instant::now();
            while self.writes().concat().len() < bytes && waited.elapsed() < Duration::from_secs(10)
            {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    impl Write for Recording {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(wait) = lock(&self.first).take() {
                let _ = wait.recv();
            }
            lock(&self.writes).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write_line(writer: &LogWriter, line: &[u8]) {
        writer.make_writer().write_all(line).expect("taken");
    }

    /// `lines` lines `"<thread> <n>"` from each of `threads` threads, pausing `pause(t, n)`
    /// after each; returns when all are written to `writer`.
    fn write_from_threads(
        writer: &LogWriter,
        threads: usize,
        lines: usize,
        pause: fn(usize, usize) -> Duration,
    ) {
        let threads: Vec<_> = (0..threads)
            .map(|t| {
                let writer = writer.clone();
                thread::spawn(move || {
                    for n in 0..lines {
                        write_line(&writer, format!("{t} {n}\n").as_bytes());
                        thread::sleep(pause(t, n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("wrote");
        }
    }

    #[test]
    fn a_stalled_stdout_drops_and_counts_lines_instead_of_blocking_the_caller() {
        const LINE: &[u8] = b"{\"message\":\"request\"}\n";
        const SENT: usize = 10_000;
        let (release, stalled) = mpsc::channel();
        let (writer, guard) = spawn(Stalled(stalled), 100 * LINE.len()).expect("spawned");
        let (done, finished) = mpsc::channel();
        thread::spawn({
            let writer = writer.clone();
            move || {
                for _ in 0..SENT {
                    write_line(&writer, LINE);
                }
                let _ = done.send(());
            }
        });
        let returned = finished.recv_timeout(Duration::from_secs(10));
        drop(release);
        assert!(returned.is_ok(), "the logging thread waited for stdout");
        // The writer thread holds what it gathered before the stall, the buffer at most 100
        // lines: the rest are dropped.
        let dropped = writer.dropped_lines() as usize;
        assert!(
            (SENT - 2 * 100..SENT).contains(&dropped),
            "{dropped} dropped"
        );
        drop(guard);
    }

    #[test]
    fn lines_gathered_together_reach_stdout_in_one_write() {
        let (release, first) = mpsc::channel();
        let out = Recording::new(Some(first));
        let (writer, guard) = spawn(out.clone(), THREAD_BYTES).expect("spawned");
        // The writer thread takes the first line and waits in its write while 999 more gather.
        let lines: Vec<String> = (0..1000).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        for line in &lines {
            write_line(&writer, line.as_bytes());
        }
        drop(release);
        let expected = lines.concat().into_bytes();
        out.wait_for(expected.len());
        drop(guard);
        let writes = out.writes();
        assert_eq!(writes.concat(), expected, "every line, in order");
        // One write for what had gathered when the thread woke, one for the rest; a stdout
        // written line by line would have seen 1000.
        assert!(writes.len() <= 2, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_line_on_a_quiet_pod_is_written_without_waiting_for_more() {
        let out = Recording::new(None);
        let (writer, _guard) = spawn(out.clone(), THREAD_BYTES).expect("spawned");
        // The thread's first line, then one after the writer has gone back to sleep.
        for line in [
            &b"{\"message\":\"first\"}\n"[..],
            b"{\"message\":\"alone\"}\n",
        ] {
            let before = out.writes().concat().len();
            thread::sleep(Duration::from_millis(20));
            write_line(&writer, line);
            out.wait_for(before + line.len());
        }
        assert_eq!(
            out.writes(),
            [
                b"{\"message\":\"first\"}\n".to_vec(),
                b"{\"message\":\"alone\"}\n".to_vec()
            ]
        );
    }

    #[test]
    fn lines_that_come_as_the_writer_falls_asleep_are_not_left_behind() {
        const THREADS: usize = 4;
        const LINES: usize = 200;
        let out = Recording::new(None);
        let (writer, _guard) = spawn(out.clone(), THREAD_BYTES).expect("spawned");
        // Pauses of up to 2.8 ms, around the writer's 1 ms rest: it keeps going to sleep.
        write_from_threads(&writer, THREADS, LINES, |t, n| {
            Duration::from_micros(((t * 7 + n * 13) % 15) as u64 * 200)
        });
        // The last lines are written without the guard's drop to push them out.
        let expected: usize = (0..THREADS)
            .flat_map(|t| (0..LINES).map(move |n| format!("{t} {n}\n").len()))
            .sum();
        out.wait_for(expected);
        assert_eq!(out.writes().concat().len(), expected);
    }

    #[test]
    fn every_threads_lines_are_written_in_their_order_and_none_is_lost_at_shutdown() {
        const THREADS: usize = 4;
        const LINES: usize = 5_000;
        let out = Recording::new(None);
        let (writer, guard) = spawn(out.clone(), THREAD_BYTES).expect("spawned");
        write_from_threads(&writer, THREADS, LINES, |_, _| Duration::ZERO);
        // Dropping the guard writes what is still gathered.
        drop(guard);
        let written = String::from_utf8(out.writes().concat()).expect("text");
        let mut next = [0; THREADS];
        for line in written.lines() {
            let (t, n) = line.split_once(' ').expect("two numbers");
            let (t, n): (usize, usize) = (t.parse().expect("t"), n.parse().expect("n"));
            assert_eq!(n, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [LINES; THREADS]);
        assert_eq!(writer.dropped_lines(), 0);
    }
}
