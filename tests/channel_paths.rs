//! The channel's layers on the two paths the leak race is run on, checked
//! in the trace of a flagship run (grpc-go at `e0ac3acff`):
//! * the priority worker's path from publishing p0's picker to `Remove`
//!   crosses the cds gracefulswitch, cluster_manager's child wrapper, its
//!   aggregator, the top gracefulswitch, the channel and its connectivity
//!   state manager, and, under grpctest's logger, one shared logger lock
//!   per Info log;
//! * the close path before `balancergroup.Close` closes the idleness
//!   manager, publishes SHUTDOWN, closes the resolver wrapper (the xDS
//!   resolver and its client), cancels cds's watch and stops
//!   cluster_resolver's resource resolver.

use lbsim::grpc::Variant;
use lbsim::scenario::Scenario;
use lbsim::scenario::driver::{GrpcModel, MAX_STALL};
use lbsim::sim::strategy::Timed;
use lbsim::sim::{Op, RunConfig, Sim, Trace};

const FLAGSHIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scenarios/switch_to_lower_priority_and_back.toml"
);

/// The trace of one timed flagship run of pre-8095.
fn trace(scenario: &Scenario, seed: u64) -> Trace {
    let model = GrpcModel::new(scenario);
    let mut sim = Sim::new(Box::new(Timed::new(scenario.runtime.clone())));
    let cfg = RunConfig {
        trace: true,
        max_early_fire: MAX_STALL,
        grace: scenario.client.leak_check_grace,
        ..RunConfig::new(seed)
    };
    let (report, _) = model.run_report(Variant::Pre8095, &mut sim, &cfg);
    report.trace.expect("tracing was on")
}

/// (task, op, object, note) of every event.
fn events(t: &Trace) -> Vec<(String, Op, String, String)> {
    t.events
        .iter()
        .map(|e| {
            (
                e.task
                    .map_or(String::new(), |id| t.task_name(id).to_string()),
                e.op,
                if e.op == Op::Spawn {
                    String::new()
                } else {
                    t.objects[e.obj.0 as usize].1.to_string()
                },
                e.note.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn position(ev: &[(String, Op, String, String)], from: usize, note: &str) -> usize {
    from + ev[from..]
        .iter()
        .position(|e| e.3 == note)
        .unwrap_or_else(|| panic!("no note {note:?} after event {from}"))
}

/// The mutexes `task` locks in `ev[from..to]`, in order.
fn locks(ev: &[(String, Op, String, String)], from: usize, to: usize, task: &str) -> Vec<String> {
    ev[from..to]
        .iter()
        .filter(|e| e.0 == task && e.1 == Op::Lock)
        .map(|e| e.2.clone())
        .collect()
}

const LOGGER: &str = "grpctest.tLogger.mu";
const T_LOG: &str = "testing.T.mu";

#[test]
fn the_worker_crosses_every_layer_from_the_picker_to_remove() {
    let scenario = Scenario::load(FLAGSHIP).unwrap();
    assert!(
        scenario.client.test_logger,
        "the flagship models a grpctest test"
    );
    let ev = events(&trace(&scenario, 1));
    // The last READY picker of p0 is the one the worker publishes before it
    // demotes p1.
    let pushed = ev
        .iter()
        .rposition(|e| {
            e.3.starts_with("priority: push picker of priority-0-0 (Ready")
        })
        .expect("p0's READY picker is published");
    let remove = position(&ev, pushed, "balancergroup: Remove(priority-0-1) begins");
    let up: Vec<String> = locks(&ev, pushed, remove, "priority.run")
        .into_iter()
        .filter(|m| m != LOGGER && m != T_LOG)
        .collect();
    assert_eq!(
        up,
        [
            "gracefulswitch.mu",
            "subBalancerWrapper.mu[cluster:cluster]",
            "cluster_manager.aggregator.mu",
            "gracefulswitch.mu",
            "cc.mu",
            "ccb.mu",
            "csMgr.mu",
        ],
        "the picker's way up from the priority worker"
    );
    // Three Info logs on the way up (the group's state update, the
    // aggregator's update and its pickers), each through the logger's lock
    // and then testing.T's.
    let logs = locks(&ev, pushed, remove, "priority.run");
    assert_eq!(logs.iter().filter(|m| *m == LOGGER).count(), 3, "{logs:?}");
    assert_eq!(logs.iter().filter(|m| *m == T_LOG).count(), 3, "{logs:?}");
    // Remove logs before it takes the outgoing lock.
    let outgoing = remove
        + ev[remove..]
            .iter()
            .position(|e| e.0 == "priority.run" && e.1 == Op::Lock)
            .unwrap();
    assert_eq!(ev[outgoing].2, LOGGER);
    assert_eq!(
        locks(&ev, outgoing, ev.len(), "priority.run")[..3],
        [LOGGER, T_LOG, "balancergroup.outgoingMu"]
    );
}

#[test]
fn without_the_test_logger_no_log_takes_a_lock() {
    let mut scenario = Scenario::load(FLAGSHIP).unwrap();
    scenario.client.test_logger = false;
    let t = trace(&scenario, 1);
    assert!(!t.objects.iter().any(|(_, name)| &**name == LOGGER));
    let ev = events(&t);
    let pushed = ev
        .iter()
        .rposition(|e| {
            e.3.starts_with("priority: push picker of priority-0-0 (Ready")
        })
        .unwrap();
    let remove = position(&ev, pushed, "balancergroup: Remove(priority-0-1) begins");
    assert_eq!(
        locks(&ev, remove, ev.len(), "priority.run")[0],
        "balancergroup.outgoingMu"
    );
}

#[test]
fn close_takes_the_channel_close_path_before_the_group_closes() {
    let scenario = Scenario::load(FLAGSHIP).unwrap();
    let ev = events(&trace(&scenario, 1));
    let close = position(&ev, 0, "client: conn.Close()");
    let group_close = ev
        .iter()
        .rposition(|e| e.3 == "balancergroup: Close C1 (incoming: shut down SubConns)")
        .expect("the priority policy's group closes");
    // The caller: the idleness manager, SHUTDOWN published under cc.mu,
    // the resolver wrapper, then the balancer wrapper.
    let main: Vec<String> = locks(&ev, close, group_close, "main")
        .into_iter()
        .filter(|m| m != LOGGER && m != T_LOG)
        .collect();
    assert_eq!(
        main[..6],
        [
            "idlenessMgr.idleMu",
            "cc.mu",
            "csMgr.mu",
            "csMgr.pubSub.mu",
            "ccr.mu",
            "ccb.mu"
        ]
    );
    let by = |task: &str, op: Op, obj: &str| {
        ev[close..group_close]
            .iter()
            .any(|e| e.0 == task && e.1 == op && e.2 == obj)
    };
    // The xDS resolver closes on the resolver wrapper's serializer.
    assert!(by(
        "ccr.serializer.run",
        Op::Fire,
        "xdsResolver.serializer.ctx"
    ));
    // cds cancels its watch on its serializer and waits for the xDS
    // client's serializer (or finds it closed).
    assert!(by("cds.serializer.run", Op::Wait, "xdsclient.unwatch.done"));
    // Before the priority policy closes, cluster_resolver's run task stops
    // its resource resolver: its mutex, its watch, its serializer.
    assert!(by("cluster_resolver.run", Op::Lock, "resourceResolver.mu"));
    assert!(by(
        "cluster_resolver.run",
        Op::Wait,
        "xdsclient.unwatch.done"
    ));
    assert!(by(
        "cluster_resolver.run",
        Op::Wait,
        "resourceResolver.serializer.done"
    ));
    // cluster_manager's group closes cds through its gracefulswitch.
    let cds_gsb = ev[close..group_close]
        .iter()
        .any(|e| e.0 == "ccb.serializer.run" && e.1 == Op::Lock && e.2 == "gracefulswitch.mu");
    assert!(cds_gsb);
}
