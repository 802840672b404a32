//! Property tests: every message survives encode -> decode, streams of frames split
//! anywhere decode in order, and arbitrary bytes never panic the decoder.

use super::*;
use crate::estimate::{Antagonist, DemandForecast, InterferenceEstimate, ScoreComponent};
use crate::model::*;
use proptest::collection::vec;
use proptest::prelude::*;

// Finite floats only: NaN != NaN would fail equality, not the codec.
fn num() -> impl Strategy<Value = f64> {
    prop_oneof![-1e12f64..1e12, Just(0.0), Just(f64::MAX), Just(f64::MIN_POSITIVE)]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![
        Just(Resource::Cpu),
        Just(Resource::Memory),
        Just(Resource::Net),
        (any::<u32>(), any::<u32>()).prop_map(|(major, minor)| Resource::Io { dev: DeviceId { major, minor } }),
    ]
}

fn workload() -> impl Strategy<Value = WorkloadRef> {
    (any::<u64>(), text()).prop_map(|(id, path)| WorkloadRef { id: WorkloadId(id), path })
}

fn reason() -> impl Strategy<Value = Reason> {
    (text(), text()).prop_map(|(code, detail)| Reason { code, detail })
}

fn bid() -> impl Strategy<Value = Bid> {
    let ask = (resource(), any::<u64>(), num()).prop_map(|(resource, amount, max_price)| Ask { resource, amount, max_price });
    let release = (resource(), any::<u64>(), num()).prop_map(|(resource, amount, min_price)| Release { resource, amount, min_price });
    let trade = (resource(), any::<u64>(), resource(), any::<u64>())
        .prop_map(|(give, give_amount, want, want_amount)| TradeOffer { give, give_amount, want, want_amount });
    (
        (any::<u64>(), workload(), any::<u64>(), vec(ask, 0..3), vec(release, 0..3), vec(trade, 0..2)),
        (any::<i64>(), any::<u32>(), any::<bool>(), any::<u64>(), vec(reason(), 0..2)),
    )
        .prop_map(|((id, workload, at, asks, releases, trades), (wtp, priority, slo_breach, lease_ms, reasons))| Bid {
            id: BidId(id),
            workload,
            at: Timestamp(at),
            asks,
            releases,
            trades,
            willingness_to_pay: Credits(wtp),
            priority,
            slo_breach,
            lease_ms,
            reasons,
        })
}

fn lease() -> impl Strategy<Value = Lease> {
    let lender = prop_oneof![Just(Lender::Pool), any::<u64>().prop_map(|w| Lender::Workload(WorkloadId(w)))];
    (any::<u64>(), any::<u64>(), lender, resource(), any::<u64>(), num(), any::<u64>(), any::<u64>()).prop_map(
        |(id, holder, lender, resource, amount, price, start, expiry)| Lease {
            id: LeaseId(id),
            holder: WorkloadId(holder),
            lender,
            resource,
            amount,
            price,
            start: Timestamp(start),
            expiry: Timestamp(expiry),
        },
    )
}

fn setting() -> impl Strategy<Value = Setting> {
    let dev = (any::<u32>(), any::<u32>()).prop_map(|(major, minor)| DeviceId { major, minor });
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(millicores, period_us)| Setting::CpuMax { millicores, period_us }),
        any::<u32>().prop_map(|weight| Setting::CpuWeight { weight }),
        any::<u64>().prop_map(|bytes| Setting::MemoryHigh { bytes }),
        (dev.clone(), any::<Option<u64>>(), any::<Option<u64>>()).prop_map(|(dev, rbps, wbps)| Setting::IoMax { dev, rbps, wbps }),
        (dev, any::<u32>()).prop_map(|(dev, weight)| Setting::IoWeight { dev, weight }),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    (any::<u64>(), any::<u64>(), workload(), lease(), setting(), vec(any::<u64>(), 0..3), vec(reason(), 0..2)).prop_map(
        |(id, round, workload, lease, setting, caused_by, reasons)| Decision {
            id: DecisionId(id),
            round,
            workload,
            lease,
            setting,
            caused_by: caused_by.into_iter().map(BidId).collect(),
            reasons,
        },
    )
}

fn estimate() -> impl Strategy<Value = InterferenceEstimate> {
    let component = (text(), num(), num(), num(), num())
        .prop_map(|(name, value, baseline, weight, contribution)| ScoreComponent { name, value, baseline, weight, contribution });
    let antagonist = (any::<u64>(), num(), any::<u64>(), proptest::option::of(num()), text()).prop_map(
        |(w, blame, kernel_wait_ns, correlation, explanation)| Antagonist { workload: WorkloadId(w), blame, kernel_wait_ns, correlation, explanation },
    );
    (any::<u64>(), any::<u64>(), num(), vec(component, 0..3), vec(text(), 0..2), vec(antagonist, 0..3)).prop_map(
        |(w, at, score, components, unavailable, antagonists)| InterferenceEstimate {
            workload: WorkloadId(w),
            at: Timestamp(at),
            score,
            components,
            unavailable,
            antagonists,
        },
    )
}

fn forecast() -> impl Strategy<Value = DemandForecast> {
    ((any::<u64>(), resource(), any::<u64>(), any::<u64>(), num(), num()), (num(), num(), text(), proptest::option::of(num()), proptest::option::of(num()), any::<bool>()))
        .prop_map(|((w, resource, at, horizon_ms, mean, lower), (upper, level, model, mase, overload_probability, anomaly))| DemandForecast {
            workload: WorkloadId(w),
            resource,
            at: Timestamp(at),
            horizon_ms,
            mean,
            lower,
            upper,
            level,
            model,
            mase,
            overload_probability,
            anomaly,
        })
}

fn signals() -> impl Strategy<Value = SignalSummary> {
    let u = || proptest::option::of(any::<u64>());
    let f = || proptest::option::of(num());
    ((u(), f(), f(), u(), u(), u()), (u(), u(), f(), f(), f())).prop_map(|((a, b, c, d, e, g), (h, i, j, k, l))| SignalSummary {
        cpu_millicores: a,
        rq_delay_share: b,
        cpi: c,
        memory_bytes: d,
        io_read_bps: e,
        io_write_bps: g,
        net_rx_bps: h,
        net_tx_bps: i,
        psi_cpu_some_avg10: j,
        psi_memory_some_avg10: k,
        psi_io_some_avg10: l,
    })
}

fn host() -> impl Strategy<Value = HostId> {
    text().prop_map(HostId)
}

fn account() -> impl Strategy<Value = Account> {
    (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(|(w, c, reputation)| Account { workload: WorkloadId(w), credits: Credits(c), reputation })
}

fn small() -> impl Strategy<Value = f32> {
    prop_oneof![-1e6f32..1e6, Just(0.0f32)]
}

fn host_view() -> impl Strategy<Value = HostView> {
    let summary = (workload(), text(), signals()).prop_map(|(workload, name, signals)| WorkloadSummary { workload, name, signals });
    let cell = (any::<u64>(), any::<u64>(), any::<u64>(), num()).prop_map(|(v, d, wait_ns, blame)| crate::estimate::MatrixCell {
        victim: WorkloadId(v),
        delayer: WorkloadId(d),
        wait_ns,
        blame,
    });
    let lease = (any::<u64>(), text(), setting(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(l, cgroup, setting, start, expiry, d)| EnforcedLease {
        lease: LeaseId(l),
        cgroup,
        setting,
        start: Timestamp(start),
        expiry: Timestamp(expiry),
        decision: DecisionId(d),
    });
    (
        (host(), any::<u64>(), any::<u64>(), vec(summary, 0..3), vec(estimate(), 0..2), vec(cell, 0..3)),
        (vec(forecast(), 0..2), vec(lease, 0..2), vec(decision(), 0..2), text(), any::<u32>()),
    )
        .prop_map(|((host, at, period_ms, workloads, estimates, cells), (forecasts, leases, decisions, arbiter, omitted))| HostView {
            host,
            at: Timestamp(at),
            period_ms,
            workloads,
            estimates,
            matrix: crate::estimate::InterferenceMatrix { at: Timestamp(at), window_periods: 30, workloads: vec![], cells },
            forecasts,
            leases,
            decisions,
            arbiter,
            unavailable: vec![],
            omitted,
        })
}

fn host_history() -> impl Strategy<Value = HostHistory> {
    let series = (any::<u64>(), text(), any::<u64>(), vec(proptest::option::of(small()), 0..4), vec(proptest::option::of(any::<u32>()), 0..4), vec(proptest::option::of(small()), 0..4))
        .prop_map(|(w, name, end, score, cpu_millicores, rq_delay_share)| WorkloadSeries { workload: WorkloadId(w), name, end: Timestamp(end), score, cpu_millicores, rq_delay_share });
    (host(), any::<u64>(), vec(series, 0..3)).prop_map(|(host, period_ms, series)| HostHistory { host, period_ms, series })
}

fn inspect() -> impl Strategy<Value = InspectEvent> {
    let snapshot = (host(), any::<u64>(), any::<u64>(), any::<u32>())
        .prop_map(|(host, s, at, workloads)| HostSnapshot { host, session: SessionId(s), connected_at: Timestamp(at), workloads });
    let summary = (workload(), text(), signals()).prop_map(|(workload, name, signals)| WorkloadSummary { workload, name, signals });
    let price = (resource(), num()).prop_map(|(resource, price)| Price { resource, price });
    let at = || any::<u64>().prop_map(Timestamp);
    prop_oneof![
        (at(), vec(snapshot, 0..3)).prop_map(|(at, hosts)| InspectEvent::Hosts { at, hosts }),
        (host(), at(), vec(summary, 0..3)).prop_map(|(host, at, workloads)| InspectEvent::Workloads { host, at, workloads }),
        (host(), at(), vec(estimate(), 0..2)).prop_map(|(host, at, estimates)| InspectEvent::Estimates { host, at, estimates }),
        (host(), vec(bid(), 0..2)).prop_map(|(host, bids)| InspectEvent::Bids { host, bids }),
        (host(), at(), vec(price, 0..3)).prop_map(|(host, at, prices)| InspectEvent::Prices { host, at, prices }),
        (host(), at(), vec(lease(), 0..3)).prop_map(|(host, at, leases)| InspectEvent::Leases { host, at, leases }),
        (host(), any::<u64>(), vec(decision(), 0..2)).prop_map(|(host, round, decisions)| InspectEvent::Decisions { host, round, decisions }),
        (host(), at(), vec(forecast(), 0..2)).prop_map(|(host, at, forecasts)| InspectEvent::Forecasts { host, at, forecasts }),
        (host(), at(), vec(account(), 0..3)).prop_map(|(host, at, accounts)| InspectEvent::Accounts { host, at, accounts }),
        (text(), at()).prop_map(|(site, at)| InspectEvent::Federation {
            site: site.clone(),
            at,
            message: Box::new(FederationMessage::Verdict { proposal: ProposalId { site: site.clone(), seq: 1 }, at, verdict: MigrationVerdict::Failed { error: site } }),
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let kind = prop_oneof![
        Just(InspectKind::Hosts),
        Just(InspectKind::Workloads),
        Just(InspectKind::Estimates),
        Just(InspectKind::Bids),
        Just(InspectKind::Prices),
        Just(InspectKind::Leases),
        Just(InspectKind::Decisions),
        Just(InspectKind::Forecasts),
        Just(InspectKind::Accounts),
        Just(InspectKind::Federation)
    ];
    let wl_report = (workload(), text(), signals(), proptest::option::of(estimate()), vec(forecast(), 0..2))
        .prop_map(|(workload, name, signals, estimate, forecasts)| WorkloadReport { workload, name, signals, estimate, forecasts });
    prop_oneof![
        (any::<u16>(), any::<u16>(), host(), vec(text(), 0..3)).prop_map(|(min, max, host, capabilities)| Message::Hello(Hello { min, max, host, capabilities })),
        (any::<u16>(), any::<u64>(), host(), any::<u64>())
            .prop_map(|(version, s, host, round_ms)| Message::Welcome(Welcome { version, session: SessionId(s), host, round_ms })),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Message::UnsupportedVersion(UnsupportedVersion { supported_min: a, supported_max: b })),
        (any::<u64>(), host(), any::<u64>(), any::<u64>(), vec(wl_report, 0..3))
            .prop_map(|(seq, host, at, period_ms, workloads)| Message::Report(Report { seq, host, at: Timestamp(at), period_ms, workloads, inventory: None })),
        bid().prop_map(Message::Bid),
        proptest::collection::vec(bid(), 0..4).prop_map(|bids| Message::Bids(Bids { bids })),
        (any::<u64>(), any::<u64>(), vec(decision(), 0..3)).prop_map(|(round, at, decisions)| Message::Decisions(Decisions { round, at: Timestamp(at), decisions })),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(seq, l, extend_ms)| Message::LeaseRenew(LeaseRenew { seq, lease: LeaseId(l), extend_ms })),
        (any::<u64>(), any::<u64>()).prop_map(|(seq, l)| Message::LeaseRelease(LeaseRelease { seq, lease: LeaseId(l) })),
        any::<u64>().prop_map(|seq| Message::Ack(Ack { seq })),
        (proptest::option::of(any::<u64>()), any::<u16>(), text())
            .prop_map(|(seq, code, message)| Message::Error(ErrorMessage { seq, code: ErrorCode(code), message })),
        (any::<u64>(), vec(host(), 0..3), vec(kind, 0..3))
            .prop_map(|(seq, hosts, kinds)| Message::Subscribe(Subscribe { seq, filter: InspectFilter { hosts, kinds } })),
        inspect().prop_map(Message::Inspect),
        (text(), any::<u64>(), text(), any::<bool>(), num(), any::<u8>(), text()).prop_map(|(site, seq, voter, approve, p, criticality, reason)| {
            Message::Federation(FederationMessage::Vote(MigrationVote { proposal: ProposalId { site, seq }, voter, approve, judged_probability: p, criticality, reason }))
        }),
        (text(), any::<u64>(), host(), vec(num(), 0..4), vec((workload(), num(), any::<u8>()), 0..3)).prop_map(|(site, seq, host, history, wl)| {
            Message::Federation(FederationMessage::Proposal(MigrationProposal {
                id: ProposalId { site: site.clone(), seq },
                destination: site,
                priority: 1,
                host,
                overload_probability: 0.5,
                overload_level: 0.875,
                threshold: 0.5,
                history,
                horizon_steps: 3,
                workloads: wl.into_iter().map(|(workload, demand, criticality)| MigrationWorkload { workload, demand, criticality, pod: None }).collect(),
                at: Timestamp(0),
                alternative_to: None,
            }))
        }),
        (any::<u64>(), vec(any::<u8>(), 0..64)).prop_map(|(seq, body)| Message::Raft(RaftFrame { seq, kind: RaftKind::Reply, body })),
        (proptest::option::of(text()), text()).prop_map(|(leader, reason)| Message::Redirect(Redirect { leader, reason })),
        (any::<u64>(), any::<u64>()).prop_map(|(seq, id)| Message::ClusterRequest(ClusterRequest { seq, op: ClusterOp::Remove { id } })),
        host_view().prop_map(Message::HostView),
        host_history().prop_map(Message::HostHistory),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let frame = encode(&msg, MAX_FRAME_BYTES).expect("encode");
        let (back, used) = decode_frame(&frame, MAX_FRAME_BYTES).expect("decode").expect("complete");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn every_message_round_trips_packed(msg in message()) {
        let mut frame = Vec::new();
        encode_for(VERSION_PACKED, &msg, &mut frame, MAX_FRAME_BYTES).expect("encode");
        let (back, used) = decode_frame(&frame, MAX_FRAME_BYTES).expect("decode").expect("complete");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn a_stream_split_anywhere_decodes_in_order(msgs in vec(message(), 1..5), cut in any::<prop::sample::Index>()) {
        let mut stream = Vec::new();
        for m in &msgs {
            encode_into(m, &mut stream, MAX_FRAME_BYTES).expect("encode");
        }
        // Deliver in two pieces, as a network would, and decode with a growing buffer.
        let split = cut.index(stream.len() + 1);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in [&stream[..split], &stream[split..]] {
            buf.extend_from_slice(piece);
            while let Some((m, used)) = decode_frame(&buf, MAX_FRAME_BYTES).expect("decode") {
                out.push(m);
                buf.drain(..used);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&bytes, MAX_FRAME_BYTES);
        let _ = decode_payload(&bytes);
    }

    #[test]
    fn corrupting_a_valid_frame_never_panics(msg in message(), packed in any::<bool>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut frame = Vec::new();
        encode_for(if packed { VERSION_PACKED } else { VERSION_MIN }, &msg, &mut frame, MAX_FRAME_BYTES).expect("encode");
        let i = at.index(frame.len());
        frame[i] = byte;
        let _ = decode_frame(&frame, MAX_FRAME_BYTES);
    }
}
