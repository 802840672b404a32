//! SLO check: is the workload past any configured ceiling this period?

use super::policy::{PsiResource, SloCeiling, WorkloadPolicy};
use truce_common::model::Reason;
use truce_common::signal::{Pressure, WorkloadSample};

/// The verdict for one period: which ceilings were breached, and which could not be judged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SloVerdict {
    pub breaches: Vec<Reason>,
    /// Ceilings whose signal was missing this period (not a breach: missing is not bad).
    pub unobserved: Vec<Reason>,
}

impl SloVerdict {
    pub fn breached(&self) -> bool {
        !self.breaches.is_empty()
    }
}

fn pressure(w: &WorkloadSample, r: PsiResource) -> Option<&Pressure> {
    match r {
        PsiResource::Cpu => w.psi.cpu.as_ref(),
        PsiResource::Memory => w.psi.memory.as_ref(),
        PsiResource::Io => w.psi.io.as_ref(),
    }
}

/// `external_latency_ms` is what the service last wrote to its latency file (read by the
/// daemon, not here), or `None` when the file was missing or unreadable.
pub fn check(policy: &WorkloadPolicy, w: &WorkloadSample, external_latency_ms: Option<f64>) -> SloVerdict {
    let mut v = SloVerdict::default();
    for slo in &policy.slo {
        match slo {
            SloCeiling::RqWaitP99 { ns } => match w.cpu.rq_wait_p99_ns {
                Some(p99) if p99 > *ns => v.breaches.push(Reason {
                    code: "slo_rq_wait_p99".into(),
                    detail: format!(
                        "run-queue wait p99 {:.2} ms is above the SLO ceiling of {:.2} ms",
                        p99 as f64 / 1e6,
                        *ns as f64 / 1e6
                    ),
                }),
                Some(_) => {}
                None => v.unobserved.push(Reason {
                    code: "slo_unobserved".into(),
                    detail: "no run-queue wait histogram this period (the workload did not wait)".into(),
                }),
            },
            SloCeiling::Psi { resource, full, avg10 } => {
                let kind = if *full { "full" } else { "some" };
                let value = pressure(w, *resource).and_then(|p| if *full { p.full_avg10 } else { Some(p.some_avg10) });
                match value {
                    Some(x) if x > *avg10 => v.breaches.push(Reason {
                        code: format!("slo_psi_{}_{kind}", resource.name()),
                        detail: format!(
                            "{} pressure ({kind}, avg10) {x:.1}% is above the SLO ceiling of {avg10:.1}%",
                            resource.name()
                        ),
                    }),
                    Some(_) => {}
                    None => v.unobserved.push(Reason {
                        code: "slo_unobserved".into(),
                        detail: format!("no {} pressure ({kind}) for this workload", resource.name()),
                    }),
                }
            }
            SloCeiling::ExternalLatency { ceiling_ms } => match external_latency_ms {
                Some(x) if x > *ceiling_ms => v.breaches.push(Reason {
                    code: "slo_external_latency".into(),
                    detail: format!("the service reports latency {x:.1} ms, above its SLO of {ceiling_ms:.1} ms"),
                }),
                Some(_) => {}
                None => v.unobserved.push(Reason {
                    code: "slo_unobserved".into(),
                    detail: "the service's latency file gave no value this period".into(),
                }),
            },
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::testkit::workload;

    fn policy(slo: Vec<SloCeiling>) -> WorkloadPolicy {
        WorkloadPolicy { slo, ..WorkloadPolicy::default() }
    }

    #[test]
    fn rq_p99_above_ceiling_is_a_breach() {
        // testkit: p99 = wait_ms * 100 µs, so 300 ms of wait gives a 30 ms p99.
        let w = workload(1, "a", 500, 300);
        let v = check(&policy(vec![SloCeiling::RqWaitP99 { ns: 10_000_000 }]), &w, None);
        assert!(v.breached());
        assert_eq!(v.breaches[0].code, "slo_rq_wait_p99");
        let v = check(&policy(vec![SloCeiling::RqWaitP99 { ns: 50_000_000 }]), &w, None);
        assert!(!v.breached());
    }

    #[test]
    fn missing_external_latency_is_unobserved_not_a_breach() {
        let w = workload(1, "a", 500, 0);
        let p = policy(vec![SloCeiling::ExternalLatency { ceiling_ms: 20.0 }]);
        let v = check(&p, &w, None);
        assert!(!v.breached());
        assert_eq!(v.unobserved.len(), 1);
        assert!(check(&p, &w, Some(25.0)).breached());
    }

    #[test]
    fn psi_full_ceiling_needs_full_figures() {
        let mut w = workload(1, "a", 500, 0);
        w.psi.memory = Some(Pressure { some_avg10: 40.0, full_avg10: None, ..Pressure::default() });
        let p = policy(vec![SloCeiling::Psi { resource: PsiResource::Memory, full: true, avg10: 5.0 }]);
        assert!(!check(&p, &w, None).breached());
        w.psi.memory = Some(Pressure { some_avg10: 40.0, full_avg10: Some(12.0), ..Pressure::default() });
        assert!(check(&p, &w, None).breached());
    }
}
