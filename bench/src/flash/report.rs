//! [`FlashReport`]: what a flash crowd produced, as stable JSON and a human summary, and the
//! PASS/FAIL verdict against the `--expect-*` targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use banyan_media::stats::{round3, Distribution};
use serde::{Deserialize, Serialize};

use super::args::FlashArgs;
use crate::subscriber::Outcome;

/// One viewer's result.
#[derive(Debug, Default, Clone)]
pub struct ViewerResult {
    /// Why it got no relay (control refused or failed, or the answer was unusable).
    pub refused: Option<String>,
    /// Microseconds from arrival to control's answer.
    pub control_us: Option<u64>,
    /// The relay control assigned.
    pub relay: Option<String>,
    /// What the subscriber saw (empty when refused).
    pub outcome: Outcome,
}

impl ViewerResult {
    /// A viewer whose task was lost (panicked or cancelled).
    pub fn lost() -> Self {
        Self {
            refused: Some("viewer task lost".into()),
            ..Self::default()
        }
    }

    /// Microseconds from arrival to the first object.
    fn ttff_us(&self) -> Option<u64> {
        Some(self.control_us? + self.outcome.ttff_us?)
    }

    /// Microseconds from SUBSCRIBE_OK to the first object.
    fn first_object_us(&self) -> Option<u64> {
        let o = &self.outcome;
        let before = o.handshake_us.unwrap_or(0) + o.setup_us? + o.subscribe_us?;
        Some(o.ttff_us?.saturating_sub(before))
    }
}

/// What one relay looked like over the run (from `GET /v1/status`).
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct RelaySeen {
    /// Its id.
    pub relay_id: String,
    /// Spawned by the control plane.
    pub spawned: bool,
    /// Seconds from the first arrival to the first status that listed it (0 = there before).
    pub first_seen_s: f64,
    /// Its `max_viewers`.
    pub capacity: u32,
    /// The most sessions it reported.
    pub max_sessions: u32,
    /// The most viewers control counted on it (assigned or reported).
    pub max_viewers: u32,
    /// Status polls in which its sessions exceeded its capacity.
    pub over_capacity_polls: u64,
}

/// Per-stage join timings, each a distribution in milliseconds.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Stages {
    /// Arrival to control's `/v1/watch` answer.
    pub control: Distribution,
    /// QUIC + TLS handshake.
    pub handshake: Distribution,
    /// Handshake done to the relay's SETUP.
    pub setup: Distribution,
    /// SUBSCRIBE to SUBSCRIBE_OK.
    pub subscribe_ok: Distribution,
    /// SUBSCRIBE_OK to the first object.
    pub first_object: Distribution,
}

/// The viewers, counted.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Viewers {
    /// Viewers that arrived.
    pub total: u64,
    /// Viewers that received at least one object.
    pub with_media: u64,
    /// Viewers control answered.
    pub answered: u64,
    /// Viewers without an answer (or with an unusable one), by reason.
    pub refused: BTreeMap<String, u64>,
    /// Viewers whose connect or SUBSCRIBE failed, by step.
    pub failed: BTreeMap<String, u64>,
    /// Subscribed but no object before the end.
    pub subscribed_without_media: u64,
    /// Still connecting or subscribing when the run ended (neither failed nor subscribed).
    pub still_joining: u64,
    /// Objects all viewers received.
    pub objects: u64,
}

/// CPU over the run (arrivals and watching), in percent of one core.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct CpuUse {
    /// This bench process (every viewer's handshake, SETUP, SUBSCRIBE and objects).
    pub bench_percent: Option<f64>,
    /// The whole machine busy (a busy 2-CPU machine shows 200).
    pub host_busy_percent: Option<f64>,
    /// CPUs the machine has.
    pub cpus: usize,
}

/// The run's target check.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    /// Every target met.
    pub pass: bool,
    /// The targets missed, in words.
    pub failures: Vec<String>,
}

/// A flash crowd's results (`--json`).
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct FlashReport {
    /// The broadcast watched.
    pub broadcast: String,
    /// Viewers in the crowd.
    pub viewers_planned: u64,
    /// Seconds over which they arrived.
    pub arrival_s: f64,
    /// The viewers, counted.
    pub viewers: Viewers,
    /// `with_media / total` in percent.
    pub media_percent: f64,
    /// Time to first frame from arrival (control's answer included), milliseconds.
    pub ttff: Distribution,
    /// Each join stage.
    pub stages: Stages,
    /// Viewers per assigned relay.
    pub assigned: BTreeMap<String, u64>,
    /// Every relay the status poller saw.
    pub relays: Vec<RelaySeen>,
    /// How many status polls there were.
    pub status_polls: u64,
    /// CPU used over the run.
    pub cpu: CpuUse,
    /// The target check (with `--expect-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl FlashReport {
    /// Tally the viewers' results and the fleet.
    pub fn new(args: &FlashArgs, results: Vec<ViewerResult>, mut relays: Vec<RelaySeen>, polls: u64) -> Self {
        let mut viewers = Viewers {
            total: results.len() as u64,
            ..Viewers::default()
        };
        let mut assigned = BTreeMap::new();
        let mut ttff = Vec::new();
        let (mut control, mut handshake, mut setup, mut subscribe_ok, mut first_object) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in &results {
            control.extend(r.control_us);
            if let Some(reason) = &r.refused {
                *viewers.refused.entry(reason.clone()).or_default() += 1;
                continue;
            }
            viewers.answered += 1;
            if let Some(relay) = &r.relay {
                *assigned.entry(relay.clone()).or_default() += 1;
            }
            let o = &r.outcome;
            viewers.objects += o.objects;
            if o.failed {
                *viewers
                    .failed
                    .entry(o.failed_at.unwrap_or("join").to_owned())
                    .or_default() += 1;
                continue;
            }
            handshake.extend(o.handshake_us);
            setup.extend(o.setup_us);
            subscribe_ok.extend(o.subscribe_us);
            if o.objects > 0 {
                viewers.with_media += 1;
                ttff.extend(r.ttff_us());
                first_object.extend(r.first_object_us());
            } else if o.established {
                viewers.subscribed_without_media += 1;
            } else {
                viewers.still_joining += 1;
            }
        }
        relays.sort_by(|a, b| {
            a.first_seen_s
                .total_cmp(&b.first_seen_s)
                .then(a.relay_id.cmp(&b.relay_id))
        });
        let media_percent = if viewers.total == 0 {
            0.0
        } else {
            round3(viewers.with_media as f64 * 100.0 / viewers.total as f64)
        };
        let mut report = Self {
            broadcast: args.broadcast.clone(),
            viewers_planned: args.viewers,
            arrival_s: round3(args.arrival.as_secs_f64()),
            viewers,
            media_percent,
            ttff: Distribution::from_micros(ttff),
            stages: Stages {
                control: Distribution::from_micros(control),
                handshake: Distribution::from_micros(handshake),
                setup: Distribution::from_micros(setup),
                subscribe_ok: Distribution::from_micros(subscribe_ok),
                first_object: Distribution::from_micros(first_object),
            },
            assigned,
            relays,
            status_polls: polls,
            cpu: CpuUse::default(),
            verdict: None,
        };
        if args.has_targets() {
            report.verdict = Some(report.check(args));
        }
        report
    }

    /// Check the `--expect-*` targets, and that no relay was ever seen over its capacity.
    fn check(&self, args: &FlashArgs) -> Verdict {
        let mut failures = Vec::new();
        if let Some(want) = args.expect_media {
            if self.media_percent < want {
                failures.push(format!(
                    "media reached {:.1} % of viewers (target >= {want} %)",
                    self.media_percent
                ));
            }
        }
        if let Some(want) = args.expect_ttff_p95 {
            let want_ms = want.as_secs_f64() * 1000.0;
            match self.ttff.p95 {
                Some(p95) if p95 <= want_ms => {}
                Some(p95) => failures.push(format!(
                    "time to first frame p95 {p95:.0} ms (target <= {want_ms:.0} ms)"
                )),
                None => failures.push("no viewer received media".into()),
            }
        }
        for r in self.relays.iter().filter(|r| r.over_capacity_polls > 0) {
            failures.push(format!(
                "relay {} over capacity: {} sessions > {} in {} status polls",
                r.relay_id, r.max_sessions, r.capacity, r.over_capacity_polls
            ));
        }
        if self.status_polls == 0 {
            failures.push("relay load never read (--status-every 0s)".into());
        }
        Verdict {
            pass: failures.is_empty(),
            failures,
        }
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let v = &self.viewers;
        let ms = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.0}"));
        let dist = |d: &Distribution| {
            format!(
                "p50 {:>6}  p95 {:>6}  p99 {:>6}  max {:>6} ms",
                ms(d.p50),
                ms(d.p95),
                ms(d.p99),
                ms(d.max)
            )
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "flash crowd: {} viewers of {} in {} s",
            self.viewers_planned, self.broadcast, self.arrival_s
        );
        let _ = writeln!(
            s,
            "  media reached {}/{} viewers ({:.1} %); answered {}, refused {:?}, failed {:?}, \
             subscribed without media {}, still joining at the end {}",
            v.with_media,
            v.total,
            self.media_percent,
            v.answered,
            v.refused,
            v.failed,
            v.subscribed_without_media,
            v.still_joining
        );
        let _ = writeln!(s, "  time to first frame  {}", dist(&self.ttff));
        let st = &self.stages;
        for (name, d) in [
            ("control answer", &st.control),
            ("QUIC+TLS handshake", &st.handshake),
            ("SETUP", &st.setup),
            ("SUBSCRIBE_OK", &st.subscribe_ok),
            ("first object", &st.first_object),
        ] {
            let _ = writeln!(s, "    {name:<20} {}", dist(d));
        }
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.0} %"));
        let _ = writeln!(
            s,
            "  CPU: bench {} of a core, machine {} busy of {} CPUs",
            pct(self.cpu.bench_percent),
            pct(self.cpu.host_busy_percent),
            self.cpu.cpus
        );
        let _ = writeln!(
            s,
            "  relays (first seen s, peak sessions / capacity, viewers assigned):"
        );
        for r in &self.relays {
            let _ = writeln!(
                s,
                "    {:<14} {:>7.1}  {:>5} / {:<5} {:>5}{}{}",
                r.relay_id,
                r.first_seen_s,
                r.max_sessions,
                r.capacity,
                self.assigned.get(&r.relay_id).copied().unwrap_or(0),
                if r.spawned { "  spawned" } else { "" },
                if r.over_capacity_polls > 0 {
                    "  OVER CAPACITY"
                } else {
                    ""
                },
            );
        }
        if let Some(verdict) = &self.verdict {
            if verdict.pass {
                let _ = writeln!(s, "PASS");
            } else {
                let _ = writeln!(s, "FAIL: {}", verdict.failures.join("; "));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    fn viewer(relay: &str, control_ms: u64, stages_ms: [u64; 3], ttff_ms: Option<u64>) -> ViewerResult {
        ViewerResult {
            refused: None,
            control_us: Some(control_ms * 1000),
            relay: Some(relay.into()),
            outcome: Outcome {
                established: true,
                handshake_us: Some(stages_ms[0] * 1000),
                setup_us: Some(stages_ms[1] * 1000),
                subscribe_us: Some(stages_ms[2] * 1000),
                ttff_us: ttff_ms.map(|ms| ms * 1000),
                objects: u64::from(ttff_ms.is_some()) * 30,
                ..Outcome::default()
            },
        }
    }

    #[test]
    fn tallies_viewers_stages_and_the_verdict() {
        let args = FlashArgs::try_parse_from([
            "flash",
            "http://127.0.0.1:1",
            "--viewers",
            "4",
            "--expect-media",
            "99",
            "--expect-ttff-p95",
            "1s",
        ])
        .unwrap();
        let results = vec![
            viewer("a", 10, [5, 2, 3], Some(40)),
            viewer("b", 20, [5, 2, 3], Some(60)),
            viewer("b", 20, [5, 2, 3], None),
            ViewerResult {
                refused: Some("control: HTTP 503".into()),
                control_us: Some(1000),
                ..ViewerResult::default()
            },
        ];
        let relays = vec![RelaySeen {
            relay_id: "b".into(),
            capacity: 1,
            max_sessions: 2,
            over_capacity_polls: 1,
            ..RelaySeen::default()
        }];
        let r = FlashReport::new(&args, results, relays, 3);
        assert_eq!(
            (r.viewers.total, r.viewers.with_media, r.viewers.answered),
            (4, 2, 3)
        );
        assert_eq!(r.viewers.refused.get("control: HTTP 503"), Some(&1));
        assert_eq!(r.viewers.subscribed_without_media, 1);
        assert_eq!(r.viewers.objects, 60);
        assert_eq!(r.media_percent, 50.0);
        // Time to first frame counts from arrival: control's answer plus the subscriber's.
        assert_eq!(r.ttff.max, Some(80.0));
        // First object: after handshake, SETUP and SUBSCRIBE_OK (10 ms of the subscriber's 40).
        assert_eq!(r.stages.first_object.p50, Some(30.0));
        assert_eq!(r.assigned.get("b"), Some(&2));
        let verdict = r.verdict.clone().unwrap();
        assert!(!verdict.pass);
        assert_eq!(verdict.failures.len(), 2, "{:?}", verdict.failures);
        assert!(r.summary().contains("OVER CAPACITY") && r.summary().contains("FAIL"));
    }
}
