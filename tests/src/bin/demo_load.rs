//! truce-demo-load: the workloads of the demo, the VM tests and the mitigation benchmark.
//!
//! ```text
//! truce-demo-load victim --seconds S [--interval-ms 10] [--work-us 2000] [--latency-file F]
//! truce-demo-load cpu    --seconds S [--threads N]
//! truce-demo-load io     --seconds S --device /dev/vda [--span-mib 192]
//! truce-demo-load burst  --seconds S [--every-ms 500] [--busy-us 25000] [--pieces 4] [--policy normal|batch]
//! ```
//!
//! `victim` is a latency-sensitive service: a request arrives every interval (open loop, so a
//! late request does not delay the next arrival) and needs `work-us` of CPU time; its latency
//! runs from arrival to completion, so run-queue waits show up in it. Every second it writes
//! the last second's p99 in ms to the latency file (the agent's SLO input). `cpu` spins N
//! threads and counts work units; `io` writes 1 MiB blocks with O_DIRECT. Each prints one JSON
//! line with what it measured when its time is up (or on SIGTERM). `burst` stands in for a
//! daemon: every `every-ms` it spins `busy-us` of CPU time in `pieces` pieces 1 ms of sleep
//! apart (a daemon's hand-offs between threads), and sleeps otherwise; under SCHED_BATCH (as
//! the agent runs by default) with `--policy batch`.
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use truce_tests::phase_stats::percentile_ms;
use truce_tests::proc::thread_cpu_ns;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> Result<T> {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).with_context(|| format!("{name} needs a value"))?.parse().map_err(|_| anyhow::anyhow!("{name}: not a valid value")),
        None => default.with_context(|| format!("{name} is required")),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGTERM ends the run early and still prints the summary.
fn install_sigterm() -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let rc = unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    if rc == libc::SIG_ERR {
        bail!("cannot install the SIGTERM handler");
    }
    Ok(())
}

fn stopped(deadline: Instant) -> bool {
    STOP.load(Ordering::Relaxed) || Instant::now() >= deadline
}

/// Spin until this thread has had `ns` of CPU time (waits on a run queue do not count).
fn spin_cpu(ns: u64) {
    let begin = thread_cpu_ns();
    while thread_cpu_ns().saturating_sub(begin) < ns {
        std::hint::spin_loop();
    }
}

/// `percentile_ms`, NaN (JSON null) without requests.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    percentile_ms(sorted, p).unwrap_or(f64::NAN)
}

fn victim(args: &[String]) -> Result<()> {
    let seconds: f64 = arg(args, "--seconds", None)?;
    let interval = Duration::from_millis(arg(args, "--interval-ms", Some(10))?);
    let work_ns = arg::<u64>(args, "--work-us", Some(2000))? * 1000;
    let latency_file: Option<String> = arg(args, "--latency-file", Some(String::new())).ok().filter(|s| !s.is_empty());
    // Every request as "arrival_ms latency_us", written at the end: the demo splits the phase
    // into before and after truce's first write.
    let requests_file: Option<String> = arg(args, "--requests-file", Some(String::new())).ok().filter(|s| !s.is_empty());
    let mut requests: Vec<(u64, u64)> = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut all_us: Vec<u64> = Vec::new();
    let mut second_us: Vec<u64> = Vec::new();
    let mut next_report = start + Duration::from_secs(1);
    let mut arrival = start;
    while !stopped(deadline) {
        let now = Instant::now();
        if now < arrival {
            std::thread::sleep(arrival - now);
        }
        spin_cpu(work_ns);
        let latency = Instant::now().duration_since(arrival).as_micros() as u64;
        all_us.push(latency);
        if requests_file.is_some() {
            requests.push((arrival.duration_since(start).as_millis() as u64, latency));
        }
        second_us.push(latency);
        arrival += interval;
        if Instant::now() >= next_report {
            second_us.sort_unstable();
            if let Some(f) = &latency_file {
                let tmp = format!("{f}.tmp");
                if std::fs::write(&tmp, format!("{:.3}\n", percentile(&second_us, 0.99))).is_ok() {
                    let _ = std::fs::rename(&tmp, f);
                }
            }
            second_us.clear();
            next_report += Duration::from_secs(1);
        }
    }
    if let Some(f) = &requests_file {
        let text: String = requests.iter().map(|(at, us)| format!("{at} {us}\n")).collect();
        std::fs::write(f, text).with_context(|| format!("writing {f}"))?;
    }
    all_us.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "kind": "victim", "requests": all_us.len(), "seconds": start.elapsed().as_secs_f64(),
            "p50_ms": percentile(&all_us, 0.5), "p99_ms": percentile(&all_us, 0.99), "max_ms": percentile(&all_us, 1.0),
        })
    );
    Ok(())
}

fn cpu(args: &[String]) -> Result<()> {
    let seconds: f64 = arg(args, "--seconds", None)?;
    let threads: usize = arg(args, "--threads", Some(std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(2)))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let units = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let units = units.clone();
            std::thread::spawn(move || {
                let mut x = i as u64 + 1;
                while !stopped(deadline) {
                    // One unit: 100k steps of an LCG the optimiser cannot remove.
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    }
                    std::hint::black_box(x);
                    units.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = units.load(Ordering::Relaxed);
    println!("{}", serde_json::json!({"kind": "cpu", "threads": threads, "units": n, "seconds": secs, "units_per_s": n as f64 / secs}));
    Ok(())
}

fn burst(args: &[String]) -> Result<()> {
    let seconds: f64 = arg(args, "--seconds", None)?;
    let every = Duration::from_millis(arg(args, "--every-ms", Some(500))?);
    let busy_ns = arg::<u64>(args, "--busy-us", Some(25_000))? * 1000;
    let pieces = arg::<u64>(args, "--pieces", Some(4))?.max(1);
    match arg(args, "--policy", Some("normal".to_string()))?.as_str() {
        "normal" => {}
        "batch" => {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sched_setscheduler(2) on this thread with a parameter that outlives the call.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
                bail!("SCHED_BATCH: {}", std::io::Error::last_os_error());
            }
        }
        other => bail!("--policy: {other:?} is neither normal nor batch"),
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut next = start;
    let mut bursts = 0u64;
    while !stopped(deadline) {
        for piece in 0..pieces {
            if piece > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            spin_cpu(busy_ns / pieces);
        }
        bursts += 1;
        next += every;
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
    }
    println!("{}", serde_json::json!({"kind": "burst", "bursts": bursts, "seconds": start.elapsed().as_secs_f64()}));
    Ok(())
}

fn io(args: &[String]) -> Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const BLOCK: usize = 1 << 20;
    let seconds: f64 = arg(args, "--seconds", None)?;
    let device: String = arg(args, "--device", None)?;
    let span = arg::<u64>(args, "--span-mib", Some(192))?.max(1) * BLOCK as u64;
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).custom_flags(libc::O_DIRECT).open(&device).with_context(|| format!("opening {device} with O_DIRECT"))?;
    let layout = std::alloc::Layout::from_size_align(BLOCK, 4096)?;
    // SAFETY: the layout has a non-zero size; the buffer is freed below and only used here.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        bail!("cannot allocate the I/O buffer");
    }
    // SAFETY: ptr points to BLOCK bytes we own, aligned for O_DIRECT.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, BLOCK) };
    buf.fill(0xa5);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let (mut off, mut bytes) = (0u64, 0u64);
    let mut result = Ok(());
    while !stopped(deadline) {
        if let Err(e) = file.write_all_at(buf, off) {
            result = Err(e).context("O_DIRECT write");
            break;
        }
        bytes += BLOCK as u64;
        off = (off + BLOCK as u64) % span;
    }
    // SAFETY: allocated above with the same layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    result?;
    let secs = start.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"kind": "io", "bytes": bytes, "seconds": secs, "bytes_per_s": bytes as f64 / secs}));
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = install_sigterm().and_then(|_| match args.first().map(String::as_str) {
        Some("victim") => victim(&args[1..]),
        Some("cpu") => cpu(&args[1..]),
        Some("io") => io(&args[1..]),
        Some("burst") => burst(&args[1..]),
        _ => Err(anyhow::anyhow!("usage: truce-demo-load victim|cpu|io|burst --seconds S [options] (see the source's header)")),
    });
    if let Err(e) = result {
        eprintln!("truce-demo-load: error: {e:#}");
        std::process::exit(2);
    }
}
