use lbsim::grpc::Variant;
use lbsim::scenario::Scenario;
use lbsim::scenario::driver::GrpcModel;
use lbsim::sim::strategy::{Pct, RandomStrategy};
use lbsim::sim::{RunConfig, Sim};
use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sc = Scenario::load(&args[1]).unwrap();
    let seed: u64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let model = GrpcModel::new(&sc);
    let mut sim = if std::env::var("PCT").is_ok() {
        Sim::new(Box::new(Pct::new(3, 2000)))
    } else {
        Sim::new(Box::new(RandomStrategy::new()))
    };
    let mut cfg = RunConfig::new(seed);
    cfg.trace = true;
    cfg.max_early_fire = lbsim::scenario::driver::MAX_STALL;
    let (r, _) = model.run_report(Variant::Pre8095, &mut sim, &cfg);
    println!("outcome {}", r.outcome);
    let tr = r.trace.unwrap();
    let mut by_task: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_op: BTreeMap<String, usize> = BTreeMap::new();
    for e in &tr.events {
        let t = e
            .task
            .map(|t| tr.task_name(t).split('[').next().unwrap().to_string())
            .unwrap_or("-".into());
        *by_task.entry(t).or_default() += 1;
        let o = &tr.objects[e.obj.0 as usize].1;
        *by_op
            .entry(format!(
                "{} {}",
                e.op.as_str(),
                o.split('[').next().unwrap()
            ))
            .or_default() += 1;
    }
    let mut v: Vec<_> = by_task.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    println!("events {} steps {}", tr.events.len(), r.steps);
    for (k, n) in v.iter().take(25) {
        println!("{n:6} {k}");
    }
    let mut v: Vec<_> = by_op.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    for (k, n) in v.iter().take(30) {
        println!("{n:6} {k}");
    }
    if args.len() > 3 {
        print!("{}", tr.render());
    }
}
