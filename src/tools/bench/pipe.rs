//! The direct pipe (`--pipe`): no HTTP and no proxy. The stdio server is started once,
//! initialized, and the callers write their requests straight to its stdin, one line each,
//! reading the responses from its stdout (one caller reads itself; more share a reader thread
//! that routes responses by id). A watchdog kills the child's process group when it stops
//! answering; the child is always stopped and reaped.

use std::borrow::Cow;
use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::util::{read_line_bounded, trim_line};

use super::error::BenchError;
use super::load::join_all;
use super::plan::Plan;
use super::report::Report;
use super::rpc::{
    Check, Fail, Verdict, bad, build_request, check, initialize_request, request_parts, response_id,
};
use super::stats::{Stats, merge_stats};
use super::{BUF, BenchOptions, MAX_BODY, cfg};

/// How often the pipe watchdog looks at the run.
const WATCH: Duration = Duration::from_millis(20);
/// How long a `--pipe` child may take to exit after its stdin closes before it is killed.
const PIPE_EXIT_GRACE: Duration = Duration::from_secs(2);

/// What the callers of a `--pipe` run share.
struct PipeShared {
    opts: BenchOptions,
    tail: Option<Vec<u8>>,
    method_json: String,
    tickets: AtomicU64,
    /// The child's stdin; `None` once closed.
    stdin: Mutex<Option<ChildStdin>>,
    /// Responses received so far (the initialize one included): the watchdog's sign of life.
    answered: AtomicU64,
    /// Callers still running: while any is, the watchdog watches.
    running: AtomicU64,
    /// Set when the watchdog killed the child.
    killed: AtomicBool,
}

/// Where a caller's response lines come from.
enum Lines {
    /// The only caller reads stdout itself.
    Direct(BufReader<ChildStdout>, Vec<u8>),
    /// Lines routed by the reader thread.
    Routed(Receiver<Vec<u8>>),
}

impl Lines {
    /// The next line (without its newline), or why there is none.
    fn next(&mut self) -> Result<Cow<'_, [u8]>, Fail> {
        let gone = || Fail::Io("the child closed its stdout".into());
        match self {
            Lines::Direct(r, buf) => {
                buf.clear();
                match read_line_bounded(r, buf, MAX_BODY) {
                    Ok(0) => Err(gone()),
                    Ok(_) => Ok(Cow::Borrowed(trim_line(buf))),
                    Err(e) => Err(Fail::Io(format!("read: {e}"))),
                }
            }
            Lines::Routed(rx) => rx.recv().map(Cow::Owned).map_err(|_| gone()),
        }
    }
}

/// A `--pipe` run: spawn, initialize, run the callers, stop the child.
pub(super) fn bench_pipe(opts: &BenchOptions, argv: &[String]) -> Result<Report, BenchError> {
    let program = argv.first().ok_or_else(|| cfg("--pipe: empty command"))?;
    let label_url = format!("pipe:{}", argv.join(" "));
    let mut process = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| cfg(format!("--pipe: cannot start {program:?}: {e}")))?;
    let pid = process.id() as libc::pid_t;
    let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
        kill_group(pid);
        let _ = process.wait();
        return Err(BenchError::Internal("child pipes missing".into()));
    };
    let (method_json, tail) = request_parts(opts);
    let sh = Arc::new(PipeShared {
        opts: opts.clone(),
        tail,
        method_json,
        tickets: AtomicU64::new(0),
        stdin: Mutex::new(Some(stdin)),
        answered: AtomicU64::new(0),
        running: AtomicU64::new(1),
        killed: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = bounded::<Option<Instant>>(1);
    let watchdog = {
        let sh = sh.clone();
        thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || pipe_watchdog(&sh, pid, &stop_rx))
    };
    let result = match watchdog {
        Ok(w) => {
            let r = pipe_run(&sh, stdout, &stop_tx, &label_url);
            drop(stop_tx);
            let _ = w.join();
            r
        }
        Err(e) => Err(BenchError::Io(e)),
    };
    // Stop the child: close stdin, give it a moment, then kill its group; always reap.
    drop(sh.stdin.lock().ok().and_then(|mut s| s.take()));
    let until = Instant::now() + PIPE_EXIT_GRACE;
    while !exited(pid) && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
    kill_group(pid);
    let _ = process.wait();
    result
}

/// Initializes the child, then runs the callers; the reader thread (more than one caller) ends
/// when the child's stdout does.
fn pipe_run(
    sh: &Arc<PipeShared>,
    stdout: ChildStdout,
    stop: &Sender<Option<Instant>>,
    url: &str,
) -> Result<Report, BenchError> {
    let opts = &sh.opts;
    let n = opts.sessions;
    let mut lines = Lines::Direct(BufReader::with_capacity(BUF, stdout), Vec::new());
    if let Err(f) = pipe_initialize(sh, &mut lines) {
        let f = if sh.killed.load(Ordering::Acquire) {
            Fail::Timeout
        } else {
            f
        };
        return Err(BenchError::Initialize {
            url: url.to_string(),
            detail: format!("initialize failed: {}", f.describe()),
        });
    }
    // More than one caller: one reader thread routes responses by id (id % n is the caller).
    let mut reader = None;
    let mut sources: Vec<Lines> = Vec::with_capacity(n);
    if n == 1 {
        sources.push(lines);
    } else {
        let Lines::Direct(mut r, mut buf) = lines else {
            unreachable!("initialize reads directly")
        };
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| unbounded::<Vec<u8>>()).unzip();
        sources.extend(rxs.into_iter().map(Lines::Routed));
        let spawned = thread::Builder::new()
            .name("bench-pipe-reader".into())
            .spawn(move || {
                loop {
                    buf.clear();
                    match read_line_bounded(&mut r, &mut buf, MAX_BODY) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let line = trim_line(&buf);
                    if let Some(id) = response_id(line) {
                        let _ = txs[(id % txs.len() as u64) as usize].send(line.to_vec());
                    }
                }
            });
        reader = Some(spawned.map_err(BenchError::Io)?);
    }
    let plan = Plan::starting_now(opts);
    let _ = stop.send(plan.hard_stop);
    sh.running.store(n as u64, Ordering::Release);
    let mut total = Stats::default();
    let mut panicked = false;
    if n == 1 {
        let src = sources.pop().expect("one source");
        total = pipe_caller(0, 1, sh, src, &plan);
    } else {
        let mut threads = Vec::with_capacity(n);
        for (index, src) in sources.into_iter().enumerate() {
            let mine = sh.clone();
            let spawned = thread::Builder::new()
                .name(format!("bench-{index}"))
                .stack_size(256 * 1024)
                .spawn(move || pipe_caller(index, n, &mine, src, &plan));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // The watchdog ends the others (hard stop, or no answers).
                    sh.running.fetch_sub((n - index) as u64, Ordering::AcqRel);
                    join_all(threads);
                    return Err(BenchError::Io(e));
                }
            }
        }
        for t in threads {
            match t.join() {
                Ok(s) => merge_stats(&mut total, s),
                Err(_) => panicked = true,
            }
        }
    }
    drop(sh.stdin.lock().ok().and_then(|mut s| s.take()));
    if let Some(r) = reader {
        // The child ends at stdin EOF, or is killed by bench_pipe; either ends its stdout. Do not
        // wait for that here: bench_pipe kills the group after the grace.
        drop(r);
    }
    if panicked {
        return Err(BenchError::Internal(
            "a bench caller thread panicked".into(),
        ));
    }
    Ok(total.into_report(url.to_string(), opts, plan.measure_start))
}

/// Writes one line to the child's stdin.
fn pipe_write(sh: &PipeShared, line: &[u8]) -> Result<(), Fail> {
    let mut stdin = sh
        .stdin
        .lock()
        .map_err(|_| Fail::Io("stdin lock poisoned".into()))?;
    let w = stdin
        .as_mut()
        .ok_or_else(|| Fail::Io("stdin closed".into()))?;
    w.write_all(line)
        .map_err(|e| Fail::Io(format!("write: {e}")))
}

/// Reads lines until the response to `want` arrives.
fn pipe_wait(lines: &mut Lines, want: u64, want_version: bool) -> Result<Verdict, Fail> {
    loop {
        let line = lines.next()?;
        match check(&line, want, want_version) {
            Check::Mine(v) => return Ok(v),
            Check::NotMine => {}
            Check::Invalid(e) => log::debug!("bench pipe: skipped a line: {e}"),
        }
    }
}

/// `initialize` (id 0) and `notifications/initialized`.
fn pipe_initialize(sh: &PipeShared, lines: &mut Lines) -> Result<(), Fail> {
    let msg = initialize_request(&sh.opts.protocol_version);
    pipe_write(sh, format!("{msg}\n").as_bytes())?;
    match pipe_wait(lines, 0, true)? {
        Verdict::Result(_) => {}
        Verdict::Error(e) => return Err(Fail::JsonRpc(format!("initialize: {e}"))),
        Verdict::Unchecked => return Err(bad("initialize: no verdict")),
    }
    sh.answered.fetch_add(1, Ordering::AcqRel);
    pipe_write(
        sh,
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
    )
}

/// One caller's closed loop; its ids are `index + n * k`, k ≥ 1.
fn pipe_caller(index: usize, n: usize, sh: &PipeShared, mut lines: Lines, plan: &Plan) -> Stats {
    let mut stats = Stats::default();
    let mut json = Vec::with_capacity(1024);
    let mut k: u64 = 1;
    loop {
        let now = Instant::now();
        if plan.measure_end.is_some_and(|e| now >= e) {
            break;
        }
        let measuring = now >= plan.measure_start;
        if measuring
            && let Some(limit) = sh.opts.requests
            && sh.tickets.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        let id = index as u64 + n as u64 * k;
        k += 1;
        build_request(
            &mut json,
            &sh.opts,
            sh.tail.as_deref(),
            &sh.method_json,
            index,
            id,
        );
        json.push(b'\n');
        let start = Instant::now();
        let outcome = pipe_write(sh, &json).and_then(|()| pipe_wait(&mut lines, id, false));
        let done_at = Instant::now();
        if outcome.is_ok() {
            sh.answered.fetch_add(1, Ordering::AcqRel);
        }
        let outcome = match outcome {
            Ok(Verdict::Result(_)) => Ok(()),
            Ok(Verdict::Error(e)) => Err(Fail::JsonRpc(e)),
            Ok(Verdict::Unchecked) => Err(bad("no verdict")),
            Err(_) if sh.killed.load(Ordering::Acquire) => Err(Fail::Timeout),
            Err(f) => Err(f),
        };
        let fatal = matches!(outcome, Err(Fail::Io(_) | Fail::Timeout));
        if measuring {
            stats.requests += 1;
            stats.last_done = Some(done_at);
            match outcome {
                Ok(()) => {
                    stats.ok += 1;
                    let ns = done_at.saturating_duration_since(start).as_nanos();
                    stats.latency.record(ns.min(u128::from(u64::MAX)) as u64);
                }
                Err(f) => *stats.errors.entry(f.kind().into_owned()).or_insert(0) += 1,
            }
        }
        if fatal {
            // The child is gone (or killed): nothing more to send.
            break;
        }
    }
    sh.running.fetch_sub(1, Ordering::AcqRel);
    stats
}

/// Kills the child's group when it has not answered for `--timeout` while callers wait, or at
/// the hard stop. Ends when `stop` disconnects.
fn pipe_watchdog(sh: &PipeShared, pid: libc::pid_t, stop: &Receiver<Option<Instant>>) {
    let timeout = sh.opts.timeout;
    let mut hard_stop: Option<Instant> = None;
    let mut seen = sh.answered.load(Ordering::Acquire);
    let mut since = Instant::now();
    loop {
        match stop.recv_timeout(WATCH) {
            Ok(h) => hard_stop = h,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let answered = sh.answered.load(Ordering::Acquire);
        if answered != seen || sh.running.load(Ordering::Acquire) == 0 {
            seen = answered;
            since = now;
        }
        let stalled = now.saturating_duration_since(since) >= timeout;
        if stalled || hard_stop.is_some_and(|h| now >= h) {
            sh.killed.store(true, Ordering::Release);
            kill_group(pid);
            return;
        }
    }
}

/// SIGKILL to the process group `pid` leads (which exists while the leader is unreaped).
fn kill_group(pid: libc::pid_t) {
    // SAFETY: plain syscall; the group id is our unreaped child's pid, so it cannot be reused.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Has child `pid` exited? Does not reap it.
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid fills the zeroed siginfo_t; WNOWAIT leaves the child waitable.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r != 0 || info.si_pid() != 0
    }
}
