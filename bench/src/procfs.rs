//! Sampling a process's CPU time and resident memory from `/proc/<pid>/stat` and
//! `/proc/<pid>/status` (Linux); host-wide counters from `/proc/stat`, `/proc/net/snmp` and
//! `/proc/net/dev`.
//!
//! CPU% between two samples is `Δ(utime + stime) / Δwall × 100`: the share of one core, so a
//! process busy on two cores shows 200 %.

use std::path::PathBuf;
use std::time::Instant;

/// Why a `/proc` file could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// Reading the file failed (e.g. the process exited).
    #[error("reading {path}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The text is not in the expected format.
    #[error("unexpected format: {0}")]
    Format(&'static str),
}

/// CPU time a process has used, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// User-mode time.
    pub utime: u64,
    /// Kernel-mode time.
    pub stime: u64,
}

impl CpuTicks {
    /// User plus kernel time.
    pub fn total(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
}

/// Parse `/proc/<pid>/stat`: fields 14 (utime) and 15 (stime). The command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(text: &str) -> Result<CpuTicks, ProcError> {
    let close = text
        .rfind(')')
        .ok_or(ProcError::Format("no ')' after the command name"))?;
    let rest = text
        .get(close + 1..)
        .ok_or(ProcError::Format("nothing after the command name"))?;
    // After the name: field 3 (state) is index 0, so field N is index N - 3.
    let mut fields = rest.split_ascii_whitespace().skip(14 - 3);
    let mut next = |what| {
        fields
            .next()
            .ok_or(ProcError::Format(what))?
            .parse::<u64>()
            .map_err(|_| ProcError::Format(what))
    };
    let utime = next("utime")?;
    let stime = next("stime")?;
    Ok(CpuTicks { utime, stime })
}

/// Parse the `VmRSS:` line of `/proc/<pid>/status` into bytes.
pub fn parse_status_rss(text: &str) -> Result<u64, ProcError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or(ProcError::Format("no VmRSS line"))?;
    let mut parts = line.split_ascii_whitespace();
    let value: u64 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or(ProcError::Format("VmRSS value"))?;
    let unit = match parts.next() {
        Some("kB") | Some("KB") | Some("kb") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some("B") | None => 1,
        Some(_) => return Err(ProcError::Format("VmRSS unit")),
    };
    value.checked_mul(unit).ok_or(ProcError::Format("VmRSS value"))
}

/// Bytes and packets an interface has transmitted, from `/proc/net/dev` (host-wide; on
/// loopback every packet is counted once as transmitted and once as received).
pub fn parse_net_dev_tx(text: &str, interface: &str) -> Result<(u64, u64), ProcError> {
    let fields = text
        .lines()
        .find_map(|l| {
            let (name, rest) = l.split_once(':')?;
            (name.trim() == interface).then_some(rest)
        })
        .ok_or(ProcError::Format("no such interface in /proc/net/dev"))?;
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
    let mut tx = fields.split_ascii_whitespace().skip(8);
    let mut next = |what| {
        tx.next()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(ProcError::Format(what))
    };
    Ok((next("tx bytes")?, next("tx packets")?))
}

/// Clock ticks per second (`USER_HZ`), from `getconf CLK_TCK`; 100 (the value on every
/// mainstream Linux architecture) if that fails.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// CPU time so far.
    pub cpu: CpuTicks,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads one process's `/proc` files.
#[derive(Debug, Clone)]
pub struct ProcessSampler {
    stat: PathBuf,
    status: PathBuf,
    ticks_per_second: u64,
}

impl ProcessSampler {
    /// A sampler for `pid`.
    pub fn new(pid: u32) -> Self {
        Self::at(PathBuf::from(format!("/proc/{pid}")))
    }

    /// A sampler for the calling process.
    pub fn this_process() -> Self {
        Self::at(PathBuf::from("/proc/self"))
    }

    fn at(dir: PathBuf) -> Self {
        Self {
            stat: dir.join("stat"),
            status: dir.join("status"),
            ticks_per_second: ticks_per_second(),
        }
    }

    /// Take a sample now.
    pub fn sample(&self) -> Result<Sample, ProcError> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| ProcError::Io {
                path: path.clone(),
                source,
            })
        };
        let at = Instant::now();
        let cpu = parse_stat(&read(&self.stat)?)?;
        let rss_bytes = parse_status_rss(&read(&self.status)?)?;
        Ok(Sample { at, cpu, rss_bytes })
    }

    /// CPU% between two samples (see the module documentation); `None` if no time passed.
    pub fn cpu_percent(&self, earlier: &Sample, later: &Sample) -> Option<f64> {
        cpu_percent(earlier, later, self.ticks_per_second)
    }
}

/// CPU% of one core used between two samples, given `USER_HZ`.
pub fn cpu_percent(earlier: &Sample, later: &Sample, ticks_per_second: u64) -> Option<f64> {
    let wall = later.at.checked_duration_since(earlier.at)?.as_secs_f64();
    if wall <= 0.0 || ticks_per_second == 0 {
        return None;
    }
    let ticks = later.cpu.total().saturating_sub(earlier.cpu.total());
    Some(ticks as f64 / ticks_per_second as f64 / wall * 100.0)
}

/// Whole-machine CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostCpu {
    /// Ticks spent doing anything but idle and iowait, all CPUs.
    pub busy: u64,
    /// All ticks, all CPUs.
    pub total: u64,
    /// The CPUs `/proc/stat` lists (`cpuN` lines): the machine's, whatever this process's
    /// affinity (the fan-out scripts pin the bench to one core).
    pub cpus: usize,
}

/// Parse the aggregate `cpu` line of `/proc/stat` (user nice system idle iowait irq softirq
/// steal ...; guest time is already inside user and nice, so it is not added again).
pub fn parse_host_stat(text: &str) -> Result<HostCpu, ProcError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or(ProcError::Format("no aggregate cpu line"))?;
    let values: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().map_err(|_| ProcError::Format("cpu line value")))
        .collect::<Result<_, _>>()?;
    if values.len() < 4 {
        return Err(ProcError::Format("cpu line too short"));
    }
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Ok(HostCpu {
        busy: total.saturating_sub(idle),
        total,
        cpus: cpus.max(1),
    })
}

/// The UDP `RcvbufErrors` counter (datagrams dropped because a socket's receive buffer was
/// full, all sockets) from `/proc/net/snmp`.
pub fn parse_udp_rcvbuf_errors(text: &str) -> Result<u64, ProcError> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let header = lines.next().ok_or(ProcError::Format("no Udp header"))?;
    let values = lines.next().ok_or(ProcError::Format("no Udp values"))?;
    let index = header
        .split_ascii_whitespace()
        .position(|h| h == "RcvbufErrors")
        .ok_or(ProcError::Format("no RcvbufErrors column"))?;
    values
        .split_ascii_whitespace()
        .nth(index)
        .and_then(|v| v.parse().ok())
        .ok_or(ProcError::Format("RcvbufErrors value"))
}

/// One reading of the whole machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostSample {
    /// CPU time of all CPUs.
    pub cpu: HostCpu,
    /// UDP receive-buffer drops so far.
    pub udp_rcvbuf_errors: Option<u64>,
}

impl HostSample {
    /// Read `/proc/stat` and `/proc/net/snmp`.
    pub fn take() -> Result<Self, ProcError> {
        let stat = std::fs::read_to_string("/proc/stat").map_err(|source| ProcError::Io {
            path: "/proc/stat".into(),
            source,
        })?;
        let udp = std::fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|t| parse_udp_rcvbuf_errors(&t).ok());
        Ok(Self {
            cpu: parse_host_stat(&stat)?,
            udp_rcvbuf_errors: udp,
        })
    }

    /// UDP receive-buffer drops from `earlier` to `self`, if both could be read.
    pub fn udp_drops_since(&self, earlier: &HostSample) -> Option<u64> {
        Some(self.udp_rcvbuf_errors?.saturating_sub(earlier.udp_rcvbuf_errors?))
    }
}

/// Busy share of all CPUs between two host samples, as a percentage of one core (so a
/// fully busy 2-CPU machine shows 200 %).
pub fn host_busy_percent(earlier: &HostCpu, later: &HostCpu, cpus: usize) -> Option<f64> {
    let total = later.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
    let busy = later.busy.saturating_sub(earlier.busy);
    Some(busy as f64 / total as f64 * 100.0 * cpus as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A real line from a relay process, with a hostile command name.
    const STAT: &str = "4242 (banyan relay) (x)) S 1 4242 4242 0 -1 4194560 2935 0 0 0 \
        1234 567 0 0 20 0 3 0 98765 123456789 4321 18446744073709551615 1 1 0 0 0 0 0 4096 17920 \
        0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tbanyan-relay\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  300000 kB\nVmSize:\t  250000 kB\nVmHWM:\t   40000 kB\nVmRSS:\t   35840 kB\n\
        RssAnon:\t   30000 kB\nThreads:\t3\n";

    #[test]
    fn loopback_tx() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n  \
                   eth0: 5 1 0 0 0 0 0 0 6 2 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev_tx(dev, "lo").unwrap(), (2000, 20));
        assert_eq!(parse_net_dev_tx(dev, "eth0").unwrap(), (6, 2));
        assert!(parse_net_dev_tx(dev, "wlan0").is_err());
    }

    #[test]
    fn stat_fields_after_the_last_paren() {
        let t = parse_stat(STAT).unwrap();
        assert_eq!(
            t,
            CpuTicks {
                utime: 1234,
                stime: 567
            }
        );
        assert_eq!(t.total(), 1801);
    }

    #[test]
    fn bad_stat_is_an_error() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("1 (x) S 1 2").is_err());
        assert!(parse_stat("1 (x) S 1 2 3 4 5 6 7 8 9 10 minus 11").is_err());
        assert!(parse_stat("no parens at all 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15").is_err());
    }

    #[test]
    fn rss_in_bytes() {
        assert_eq!(parse_status_rss(STATUS).unwrap(), 35840 * 1024);
        assert!(parse_status_rss("Name:\tx\n").is_err());
        assert!(parse_status_rss("VmRSS:\t lots kB\n").is_err());
        assert!(parse_status_rss("VmRSS:\t 12 parsecs\n").is_err());
        assert!(parse_status_rss("VmRSS:\t 18446744073709551615 kB\n").is_err());
    }

    #[test]
    fn cpu_percent_is_share_of_one_core() {
        let t0 = Instant::now();
        let a = Sample {
            at: t0,
            cpu: CpuTicks {
                utime: 100,
                stime: 50,
            },
            rss_bytes: 0,
        };
        let b = Sample {
            at: t0 + Duration::from_secs(2),
            cpu: CpuTicks {
                utime: 400,
                stime: 150,
            },
            rss_bytes: 0,
        };
        // 400 ticks at 100 Hz in 2 s: two cores busy.
        assert_eq!(cpu_percent(&a, &b, 100), Some(200.0));
        assert_eq!(cpu_percent(&b, &a, 100), None, "time went backwards");
        assert_eq!(cpu_percent(&a, &a, 100), None);
        assert_eq!(cpu_percent(&a, &b, 0), None);
    }

    #[test]
    fn samples_this_process() {
        let sampler = ProcessSampler::this_process();
        let s = sampler.sample().unwrap();
        assert!(s.rss_bytes > 0);
        assert!(ProcessSampler::new(u32::MAX).sample().is_err());
    }

    #[test]
    fn host_cpu_line() {
        let text = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1 2 3\n";
        let h = parse_host_stat(text).unwrap();
        assert_eq!(h.total, 980);
        assert_eq!(h.busy, 160);
        assert_eq!(h.cpus, 1);
        let two = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 1 1 1 1\ncpu1 1 1 1 1\n";
        assert_eq!(parse_host_stat(two).unwrap().cpus, 2);
        assert!(parse_host_stat("cpu0 1 2 3 4\n").is_err());
        assert!(parse_host_stat("cpu  1 x 3 4\n").is_err());
        assert!(parse_host_stat("cpu  1 2\n").is_err());
        let later = HostCpu {
            busy: 260,
            total: 1180,
            cpus: 2,
        };
        assert_eq!(host_busy_percent(&h, &later, 2), Some(100.0));
        assert_eq!(host_busy_percent(&h, &h, 2), None);
    }

    #[test]
    fn udp_receive_buffer_drops() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 993969 4696 83502 1086405 83502 0 0\n\
            UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(parse_udp_rcvbuf_errors(snmp).unwrap(), 83502);
        assert!(parse_udp_rcvbuf_errors("Udp: InDatagrams\nUdp: 1\n").is_err());
        assert!(parse_udp_rcvbuf_errors("").is_err());
    }
}
