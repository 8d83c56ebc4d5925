//! The server's CPU time, read from `/proc/PID/stat` (user + system time of all its threads),
//! so a run can report what each delivery cost the server under test — and, beside it, the
//! time of the kernel's `ksoftirqd/N` threads over the same window: network work the kernel
//! deferred to them instead of running it in the sending process (on loopback, receiving is
//! done on the sender's core, so a server that sends in large bursts gets part of its cost
//! moved there, where `/proc/PID/stat` does not see it).

use anyhow::Context as _;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`: 100 in Linux's ABI on every
/// architecture this tool builds for).
const TICKS_PER_SEC: f64 = 100.0;

/// The processes whose CPU time is measured.
#[derive(Debug, Clone)]
pub struct ServerCpu {
    pids: Vec<u32>,
    /// The `ksoftirqd/N` kernel threads (one per core).
    softirq: Vec<u32>,
}

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    /// By the server's processes.
    pub server: f64,
    /// By the kernel's `ksoftirqd` threads, every core.
    pub softirq: f64,
}

impl std::ops::Sub for CpuSample {
    type Output = CpuSample;
    fn sub(self, earlier: CpuSample) -> CpuSample {
        CpuSample {
            server: self.server - earlier.server,
            softirq: self.softirq - earlier.softirq,
        }
    }
}

impl ServerCpu {
    /// Checks that every process exists; `None` for an empty list.
    pub fn new(pids: &[u32]) -> anyhow::Result<Option<Self>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let cpu = ServerCpu {
            pids: pids.to_vec(),
            softirq: softirq_threads(),
        };
        cpu.seconds()?;
        Ok(Some(cpu))
    }

    /// User + system CPU seconds the processes, and the `ksoftirqd` threads, have used so far.
    pub fn seconds(&self) -> anyhow::Result<CpuSample> {
        let mut ticks = 0u64;
        for pid in &self.pids {
            let path = format!("/proc/{pid}/stat");
            let stat = std::fs::read_to_string(&path)
                .with_context(|| format!("--server-pid: cannot read {path}"))?;
            ticks += parse_cpu_ticks(&stat).with_context(|| format!("unexpected {path}"))?;
        }
        // A kernel thread does not go away; one that cannot be read counts nothing.
        let softirq: u64 = self
            .softirq
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| parse_cpu_ticks(&stat))
            .sum();
        Ok(CpuSample {
            server: ticks as f64 / TICKS_PER_SEC,
            softirq: softirq as f64 / TICKS_PER_SEC,
        })
    }
}

/// The pids of the `ksoftirqd/N` threads (empty where `/proc` does not show them).
fn softirq_threads() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_an_awkward_name() {
        let line = "4242 (we ird) name)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_cpu_ticks(line), Some(175));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_is_measurable() {
        let cpu = ServerCpu::new(&[std::process::id()])
            .expect("own pid")
            .expect("some");
        let now = cpu.seconds().expect("reads");
        assert!(now.server >= 0.0 && now.softirq >= 0.0);
        assert!(
            !softirq_threads().is_empty(),
            "Linux shows one ksoftirqd thread per core"
        );
        assert!(ServerCpu::new(&[u32::MAX]).is_err(), "no such process");
    }
}
