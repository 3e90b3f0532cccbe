use lbsim::grpc::Variant;
use lbsim::scenario::Scenario;
use lbsim::scenario::driver::GrpcModel;
use lbsim::sim::strategy::{RandomStrategy, RuntimeModel, Timed};
use lbsim::sim::{RunConfig, Sim, Strategy};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sc = Scenario::load(&args[1]).unwrap();
    let model = GrpcModel::new(&sc);
    for (name, s) in [
        (
            "random",
            Box::new(RandomStrategy::new()) as Box<dyn Strategy>,
        ),
        (
            "timed",
            Box::new(Timed::new(sc.runtime.clone())) as Box<dyn Strategy>,
        ),
    ] {
        let mut sim = Sim::new(s);
        let t = Instant::now();
        let n = 300;
        let (mut steps, mut tasks, mut endt) = (0, 0, 0);
        let mut outcomes = std::collections::BTreeMap::new();
        for seed in 0..n {
            let mut cfg = RunConfig::new(seed);
            cfg.max_early_fire = lbsim::scenario::driver::MAX_STALL;
            let (r, c) = model.run_report(Variant::Pre8095, &mut sim, &cfg);
            steps += r.steps;
            tasks += r.tasks_spawned;
            endt += r.end_time;
            *outcomes
                .entry(format!("{} {}", r.outcome, c.client_errors.len()))
                .or_insert(0) += 1;
        }
        let el = t.elapsed().as_secs_f64();
        println!(
            "{name}: {:.1} us/run, {} steps/run, {} tasks/run, {:.0} ns/step, end {:.3}s, {:?}",
            el * 1e6 / n as f64,
            steps / n,
            tasks / n as usize,
            el * 1e9 / steps as f64,
            endt as f64 / n as f64 / 1e9,
            outcomes
        );
    }
}
