//! Simulated backends: listeners that go up and down, connection latency,
//! refusal, round trips, and health timelines (scripted and random).
//!
//! Stands in for the real test's stub servers and the restartable listener
//! of grpc-go `internal/testutils/restartable_listener.go` at `e0ac3acff`:
//! stopping the listener closes every open connection and closes new ones
//! right after accept, so a client sees the connection fail before the
//! server preface, just as a refused connection.
//!
//! Every backend draws its latencies and durations from its own stream,
//! seeded once from the run's data stream when it is created, so the values
//! one backend sees do not depend on how other tasks interleave.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use rand_chacha::ChaCha8Rng;

use crate::grpc::GrpcError;
use crate::sim::Name;
use crate::sim::dist::Dist;
use crate::sim::{self, Event, after_func_fire, select};

/// What a connection attempt to a backend whose listener is down meets.
#[derive(Clone, Debug, PartialEq)]
pub enum DownBehaviour {
    /// The connection is refused (or closed right after accept) after this
    /// latency.
    Refuse(Dist),
    /// Nothing answers: the attempt runs into the client's connect deadline.
    Timeout,
}

/// Latencies of one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// Time to establish a connection (TCP and HTTP/2 handshake).
    pub connect_latency: Dist,
    pub down: DownBehaviour,
    /// Round trip of one RPC.
    pub rpc_latency: Dist,
}

impl Default for BackendConfig {
    /// A local server, as in the real test: sub-millisecond handshakes, a
    /// stopped listener answers at once.
    fn default() -> Self {
        BackendConfig {
            connect_latency: Dist::Const(200 * sim::US),
            down: DownBehaviour::Refuse(Dist::Const(100 * sim::US)),
            rpc_latency: Dist::Const(100 * sim::US),
        }
    }
}

/// Up/down durations of a backend that flaps on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomHealth {
    pub up: Dist,
    pub down: Dist,
}

/// A health timeline: scripted transitions `(at, up)` in time order, and/or
/// random flapping.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthTimeline {
    pub script: Vec<(u64, bool)>,
    pub random: Option<RandomHealth>,
}

/// One open connection between a client and a backend. The client learns
/// that it was closed (by either side) through `closed`.
pub struct Connection {
    id: u64,
    backend: Weak<Backend>,
    backend_name: Rc<str>,
    closed: Event,
}

impl Connection {
    pub fn backend_name(&self) -> &Rc<str> {
        &self.backend_name
    }

    /// Fired once the connection is closed.
    pub fn closed(&self) -> &Event {
        &self.closed
    }

    pub fn is_closed(&self) -> bool {
        self.closed.has_fired()
    }

    /// Closes the connection from the client side.
    pub async fn close(&self) {
        if let Some(b) = self.backend.upgrade() {
            b.conns.borrow_mut().remove(&self.id);
        }
        self.closed.fire().await;
    }

    /// Sends one RPC and waits for its response, or for the connection to
    /// close (an error, as a broken stream), or for `ctx` to be cancelled.
    pub async fn round_trip(&self, ctx: Option<&Event>) -> Result<(), GrpcError> {
        let Some(backend) = self.backend.upgrade() else {
            return Err(GrpcError::new("transport is closing"));
        };
        let latency = backend.sample(&backend.cfg.rpc_latency);
        let response = Rc::new(Event::new("rpc.response"));
        let timer = after_func_fire(latency, "rpc.response", response.clone()).await;
        let which = match ctx {
            Some(ctx) => select(&[&self.closed, &*response, ctx]).await,
            None => select(&[&self.closed, &*response]).await,
        };
        match which {
            1 => Ok(()),
            0 => {
                timer.stop().await;
                Err(GrpcError::new("transport is closing"))
            }
            _ => {
                timer.stop().await;
                Err(GrpcError::new("context deadline exceeded"))
            }
        }
    }
}

/// A backend server at one address.
pub struct Backend {
    name: Rc<str>,
    address: Rc<str>,
    cfg: BackendConfig,
    listening: Cell<bool>,
    conns: RefCell<BTreeMap<u64, Rc<Connection>>>,
    next_conn: Cell<u64>,
    rng: RefCell<ChaCha8Rng>,
    /// Fired by [`Backend::stop`]; ends the health task.
    stopped: Event,
    accepted: Cell<u64>,
    /// The error of a dial the listener refuses, made once: a stopped
    /// backend refuses every reconnection attempt.
    refused: GrpcError,
    me: Weak<Backend>,
}

impl Backend {
    /// A backend whose listener is up. Must be called inside a run.
    pub fn new(name: &str, address: &str, cfg: BackendConfig) -> Rc<Backend> {
        let seed = sim::random_u64();
        Rc::new_cyclic(|me| Backend {
            name: Rc::from(name),
            address: Rc::from(address),
            cfg,
            listening: Cell::new(true),
            conns: RefCell::new(BTreeMap::new()),
            next_conn: Cell::new(0),
            rng: RefCell::new(crate::sim::rng::rng(seed, 0)),
            stopped: Event::new(format!("backend[{name}].stopped")),
            accepted: Cell::new(0),
            refused: GrpcError::new(format!(
                "connection error: desc = \"transport: error while dialing {address}: connection closed before server preface received\""
            )),
            me: me.clone(),
        })
    }

    pub fn name(&self) -> &Rc<str> {
        &self.name
    }

    pub fn address(&self) -> &Rc<str> {
        &self.address
    }

    pub fn is_up(&self) -> bool {
        self.listening.get()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.conns.borrow().len()
    }

    fn sample(&self, d: &Dist) -> u64 {
        d.sample(&mut *self.rng.borrow_mut())
    }

    /// `restartableListener.Stop()`: closes every open connection; new ones
    /// are closed right after accept until [`Backend::restart_listener`].
    pub async fn stop_listener(&self) {
        sim::note(|| format!("backend {} listener down", self.name));
        self.listening.set(false);
        let conns = std::mem::take(&mut *self.conns.borrow_mut());
        for (_, c) in conns {
            c.closed.fire().await;
        }
    }

    /// `restartableListener.Restart()`.
    pub async fn restart_listener(&self) {
        sim::note(|| format!("backend {} listener up", self.name));
        self.listening.set(true);
        sim::yield_now().await;
    }

    /// `Server.Stop()`: the listener goes down for good, connections close,
    /// and the health task ends.
    pub async fn stop(&self) {
        self.stopped.fire().await;
        self.stop_listener().await;
    }

    /// Opens a connection: waits the connect latency (or the refusal
    /// latency, or until `deadline` for an unanswered attempt), unless `ctx`
    /// is cancelled first. Whether the listener accepts is decided when the
    /// handshake completes.
    pub async fn dial(&self, ctx: &Event, deadline: u64) -> Result<Rc<Connection>, GrpcError> {
        let now = sim::now();
        let remaining = deadline.saturating_sub(now);
        let (wait, outcome_up) = if self.listening.get() {
            (self.sample(&self.cfg.connect_latency), true)
        } else {
            match &self.cfg.down {
                DownBehaviour::Refuse(d) => (self.sample(d), false),
                DownBehaviour::Timeout => (u64::MAX, false),
            }
        };
        let timed_out = wait > remaining;
        let wait = wait.min(remaining);
        let finished = Rc::new(Event::new("dial.finished"));
        let timer = after_func_fire(wait, "dial", finished.clone()).await;
        if select(&[ctx, &*finished]).await == 0 {
            timer.stop().await;
            return Err(GrpcError::new("context canceled"));
        }
        if timed_out {
            return Err(GrpcError::new(
                "connection error: desc = \"transport: Error while dialing: context deadline exceeded\"",
            ));
        }
        if !outcome_up || !self.listening.get() {
            return Err(self.refused.clone());
        }
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        self.accepted.set(self.accepted.get() + 1);
        let conn = Rc::new(Connection {
            id,
            backend: self.me.clone(),
            backend_name: self.name.clone(),
            closed: Event::new({
                let name = self.name.clone();
                Name::lazy(move || format!("conn[{name}#{id}].closed"))
            }),
        });
        self.conns.borrow_mut().insert(id, conn.clone());
        Ok(conn)
    }

    /// Starts the task that applies `timeline`: it sleeps until each
    /// transition and stops or restarts the listener. Ends at
    /// [`Backend::stop`] or when the timeline has no more transitions.
    pub async fn start_health(self: &Rc<Self>, timeline: HealthTimeline) {
        let me = self.clone();
        sim::go(format!("backend[{}].health", self.name), async move {
            me.run_health(timeline).await;
        })
        .await;
    }

    async fn run_health(&self, timeline: HealthTimeline) {
        let mut script = timeline.script.into_iter().peekable();
        let mut next_random = timeline.random.as_ref().map(|r| {
            let d = if self.listening.get() { &r.up } else { &r.down };
            sim::now().saturating_add(self.sample(d))
        });
        loop {
            let next_script = script.peek().map(|&(at, _)| at);
            let (at, from_script) = match (next_script, next_random) {
                (None, None) => return,
                (Some(s), Some(r)) if r < s => (r, false),
                (Some(s), _) => (s, true),
                (None, Some(r)) => (r, false),
            };
            let tick = Rc::new(Event::new("backend.health.tick"));
            let timer = after_func_fire(
                at.saturating_sub(sim::now()),
                "backend.health",
                tick.clone(),
            )
            .await;
            if select(&[&self.stopped, &*tick]).await == 0 {
                timer.stop().await;
                return;
            }
            let up = if from_script {
                script.next().expect("peeked").1
            } else {
                !self.listening.get()
            };
            if up {
                self.restart_listener().await;
            } else {
                self.stop_listener().await;
            }
            if let Some(r) = &timeline.random
                && !from_script
            {
                let d = if up { &r.up } else { &r.down };
                next_random = Some(sim::now().saturating_add(self.sample(d)));
            }
        }
    }
}

/// The backends a channel can reach, by address.
#[derive(Default)]
pub struct Network {
    backends: RefCell<BTreeMap<Rc<str>, Rc<Backend>>>,
}

impl Network {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, b: Rc<Backend>) {
        self.backends.borrow_mut().insert(b.address.clone(), b);
    }

    pub fn get(&self, address: &str) -> Option<Rc<Backend>> {
        self.backends.borrow().get(address).cloned()
    }

    /// Every backend, by address.
    pub fn backends(&self) -> Vec<Rc<Backend>> {
        self.backends.borrow().values().cloned().collect()
    }
}
