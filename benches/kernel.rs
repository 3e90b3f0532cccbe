//! Cost per preemption point: N tasks contending on mutexes and channels.
//!
//! `cargo bench --bench kernel` prints, per configuration, the time of one
//! run and the nanoseconds per preemption point (run time / steps).

use std::hint::black_box;
use std::rc::Rc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use lbsim::sim::strategy::{Pct, RandomStrategy, RuntimeModel, Timed};
use lbsim::sim::{self, Mutex, RunConfig, Sim, Strategy, Unbounded};

/// `tasks` workers, each taking one of two mutexes and passing tokens
/// through a shared unbounded queue, `rounds` times.
async fn contention(tasks: usize, rounds: usize) {
    let mus = Rc::new([Mutex::new("m0"), Mutex::new("m1")]);
    let q = Rc::new(Unbounded::<u32>::new("q"));
    let done = Rc::new(Unbounded::<()>::new("done"));
    for i in 0..tasks {
        let (mus, q, done) = (mus.clone(), q.clone(), done.clone());
        sim::spawn("worker", async move {
            for r in 0..rounds {
                let g = mus[(i + r) % 2].lock().await;
                g.unlock().await;
                q.put(r as u32).await.unwrap();
                q.get().await;
            }
            done.put(()).await.unwrap();
        });
    }
    for _ in 0..tasks {
        done.get().await;
    }
}

fn steps_of(strategy: Box<dyn Strategy>, tasks: usize) -> u64 {
    let mut sim = Sim::new(strategy);
    sim.run(&RunConfig::new(1), contention(tasks, 200)).steps
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("preemption_point");
    for tasks in [4usize, 16] {
        type Make = fn() -> Box<dyn Strategy>;
        let makers: [(&str, Make); 3] = [
            ("random", || Box::new(RandomStrategy::new())),
            ("pct3", || Box::new(Pct::new(3, 10_000))),
            ("timed", || Box::new(Timed::new(RuntimeModel::default()))),
        ];
        for (name, make) in makers {
            let steps = steps_of(make(), tasks);
            let mut sim = Sim::new(make());
            let mut seed = 0;
            g.bench_function(format!("{name}/{tasks}tasks/{steps}steps"), |b| {
                b.iter(|| {
                    seed += 1;
                    black_box(sim.run(&RunConfig::new(seed), contention(tasks, 200)))
                })
            });
            // A direct figure for the README: ns per preemption point.
            let runs = 200;
            let t = Instant::now();
            let mut total = 0;
            for s in 0..runs {
                total += sim.run(&RunConfig::new(s), contention(tasks, 200)).steps;
            }
            let ns = t.elapsed().as_nanos() as f64 / total as f64;
            println!(
                "{name:>7} {tasks:>2} tasks: {ns:.1} ns per preemption point ({total} points)"
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
