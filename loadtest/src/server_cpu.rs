//! The server's CPU time, read from `/proc/PID/stat` (user + system time of all its threads),
//! so a run can report what each delivery cost the server under test.

use anyhow::Context as _;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`: 100 in Linux's ABI on every
/// architecture this tool builds for).
const TICKS_PER_SEC: f64 = 100.0;

/// The processes whose CPU time is measured.
#[derive(Debug, Clone)]
pub struct ServerCpu {
    pids: Vec<u32>,
}

impl ServerCpu {
    /// Checks that every process exists; `None` for an empty list.
    pub fn new(pids: &[u32]) -> anyhow::Result<Option<Self>> {
        if pids.is_empty() {
            return Ok(None);
        }
        let cpu = ServerCpu {
            pids: pids.to_vec(),
        };
        cpu.seconds()?;
        Ok(Some(cpu))
    }

    /// User + system CPU seconds the processes have used so far.
    pub fn seconds(&self) -> anyhow::Result<f64> {
        let mut ticks = 0u64;
        for pid in &self.pids {
            let path = format!("/proc/{pid}/stat");
            let stat = std::fs::read_to_string(&path)
                .with_context(|| format!("--server-pid: cannot read {path}"))?;
            ticks += parse_cpu_ticks(&stat).with_context(|| format!("unexpected {path}"))?;
        }
        Ok(ticks as f64 / TICKS_PER_SEC)
    }
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
        assert!(cpu.seconds().expect("reads") >= 0.0);
        assert!(ServerCpu::new(&[u32::MAX]).is_err(), "no such process");
    }
}
