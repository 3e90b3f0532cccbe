//! Port of the addrConn of grpc-go `clientconn.go` (connect,
//! resetTransportAndUnlock, tryAllAddrs, createTransport, tearDown,
//! updateConnectivityState), the acBalancerWrapper of `balancer_wrapper.go`
//! (updateState, Connect, Shutdown, RegisterHealthListener) and
//! `internal/backoff/backoff.go`, at `e0ac3acff`.
//!
//! One task per `Connect()` (`go ac.connect()`), which lives through the
//! connection attempt and the backoff that follows a failure; one
//! `transport.reader` task per established connection, which notices the
//! connection closing and runs the transport's `onClose`. Both end once the
//! addrConn is torn down (its context is cancelled, the transport closed).
//!
//! Every state change is handed to the channel's balancer serializer; the
//! SubConn's state listener runs there, never inline.
//!
//! Simplified: the HTTP/2 transport is one [`Connection`]; there is no
//! keepalive, GOAWAY, channelz, `UpdateAddresses` or `ResetConnectBackoff`
//! (the test never calls it); health checking is not configured, so a health
//! listener hears READY through the serializer as with grpc-go's no-op
//! registration.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Address, BoxFut, GrpcError, StateListener, SubConn, SubConnId, SubConnState,
};
use crate::grpc::clientconn::ChannelCore;
use crate::grpc::connectivity::ConnectivityState;
use crate::net::Connection;
use crate::sim::{self, Event, Mutex, after_func_fire, select};

/// `backoff.Config`.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffConfig {
    pub base_delay: u64,
    pub multiplier: f64,
    pub jitter: f64,
    pub max_delay: u64,
}

impl BackoffConfig {
    /// `backoff.DefaultConfig`.
    pub fn default_config() -> Self {
        BackoffConfig {
            base_delay: sim::SEC,
            multiplier: 1.6,
            jitter: 0.2,
            max_delay: 120 * sim::SEC,
        }
    }

    /// `internal/backoff.Exponential.Backoff(retries)`; the jitter is drawn
    /// from the run's data stream.
    pub fn backoff(&self, retries: u32) -> u64 {
        if retries == 0 {
            return self.base_delay;
        }
        let (mut backoff, max) = (self.base_delay as f64, self.max_delay as f64);
        let mut retries = retries;
        while backoff < max && retries > 0 {
            backoff *= self.multiplier;
            retries -= 1;
        }
        if backoff > max {
            backoff = max;
        }
        backoff *= 1.0 + self.jitter * (sim::random_unit() * 2.0 - 1.0);
        if backoff < 0.0 { 0 } else { backoff as u64 }
    }
}

/// `grpc.ConnectParams`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectParams {
    pub backoff: BackoffConfig,
    pub min_connect_timeout: u64,
}

impl ConnectParams {
    /// The real test's `fastConnectParams`: only the base delay is set, so
    /// the first backoff is 10 ms and every later one is 0 (the zero
    /// maximum caps it), and each attempt gets at least 100 ms.
    pub fn fast() -> Self {
        ConnectParams {
            backoff: BackoffConfig {
                base_delay: 10 * sim::MS,
                multiplier: 0.0,
                jitter: 0.0,
                max_delay: 0,
            },
            min_connect_timeout: 100 * sim::MS,
        }
    }
}

impl Default for ConnectParams {
    /// grpc-go's defaults: default backoff, 20 s minimum connect timeout.
    fn default() -> Self {
        ConnectParams {
            backoff: BackoffConfig::default_config(),
            min_connect_timeout: 20 * sim::SEC,
        }
    }
}

/// Mutable state of an addrConn, guarded by `mu` in Go.
struct AcState {
    state: ConnectivityState,
    transport: Option<Rc<Connection>>,
    cur_addr: Option<Address>,
    backoff_idx: u32,
}

/// An addrConn together with its acBalancerWrapper: the SubConn the
/// channel hands to the LB policy.
pub struct AddrConn {
    id: SubConnId,
    addrs: Vec<Address>,
    cc: Weak<ChannelCore>,
    /// `ac.ctx`: fired by `ac.cancel()` in tearDown (and channel close).
    ctx: Rc<Event>,
    mu: Mutex,
    st: RefCell<AcState>,
    /// Taken out when SHUTDOWN is delivered (the last state), so the
    /// policy's listener does not keep a reference cycle alive.
    state_listener: RefCell<Option<StateListener>>,
    /// `acbw.healthMu` and the generation of `acbw.healthData` (Go compares
    /// pointers), with the state it was created for.
    health_mu: Mutex,
    health_gen: Cell<u64>,
    health_state: Cell<ConnectivityState>,
    /// `acbw.producersMu` (no producer is ever registered: health checks
    /// are off, so closing the producers only takes the lock).
    producers_mu: Mutex,
    me: Weak<AddrConn>,
}

impl AddrConn {
    pub(crate) fn new(
        id: SubConnId,
        addrs: Vec<Address>,
        cc: Weak<ChannelCore>,
        state_listener: Option<StateListener>,
    ) -> Rc<AddrConn> {
        Rc::new_cyclic(|me| AddrConn {
            id,
            addrs,
            cc,
            ctx: Rc::new(Event::new(id.name(&["sc", ".ctx"]))),
            mu: Mutex::new(id.name(&["sc", ".mu"])),
            st: RefCell::new(AcState {
                state: ConnectivityState::Idle,
                transport: None,
                cur_addr: None,
                backoff_idx: 0,
            }),
            state_listener: RefCell::new(state_listener),
            health_mu: Mutex::new(id.name(&["sc", ".healthMu"])),
            health_gen: Cell::new(0),
            health_state: Cell::new(ConnectivityState::Idle),
            producers_mu: Mutex::new(id.name(&["sc", ".producersMu"])),
            me: me.clone(),
        })
    }

    pub fn state(&self) -> ConnectivityState {
        self.st.borrow().state
    }

    fn rc(&self) -> Rc<AddrConn> {
        self.me.upgrade().expect("addrConn alive while in use")
    }

    /// `ac.connect()`, run by the task `Connect()` starts.
    async fn connect_task(self: Rc<Self>) {
        let g = self.mu.lock().await;
        let state = self.st.borrow().state;
        if state != ConnectivityState::Idle {
            // Shut down (errConnClosing) or already connecting or connected.
            g.unlock().await;
            return;
        }
        self.reset_transport_and_unlock(g).await;
    }

    /// `ac.resetTransportAndUnlock()`: called with `mu` held.
    async fn reset_transport_and_unlock(self: &Rc<Self>, g: crate::sim::MutexGuard<'_>) {
        let Some(cc) = self.cc.upgrade() else {
            g.unlock().await;
            return;
        };
        if self.ctx.has_fired() {
            g.unlock().await;
            return;
        }
        let backoff_idx = self.st.borrow().backoff_idx;
        let backoff_for = cc.params.backoff.backoff(backoff_idx);
        let dial_duration = cc.params.min_connect_timeout.max(backoff_for);
        let connect_deadline = sim::now().saturating_add(dial_duration);
        self.update_connectivity_state(ConnectivityState::Connecting, None)
            .await;
        g.unlock().await;

        if let Err(err) = self.try_all_addrs(&cc, &self.addrs, connect_deadline).await {
            cc.resolve_now();
            let g = self.mu.lock().await;
            if self.ctx.has_fired() {
                g.unlock().await;
                return;
            }
            self.update_connectivity_state(ConnectivityState::TransientFailure, Some(err.clone()))
                .await;
            g.unlock().await;

            // `time.NewTimer(backoffFor)` raced against the context.
            let id = self.id;
            let expired = Rc::new(Event::new(id.name(&["sc", ".backoff"])));
            let timer = after_func_fire(backoff_for, "addrConn.backoff", expired.clone()).await;
            if select(&[&*expired, &*self.ctx]).await == 1 {
                timer.stop().await;
                return;
            }
            let g = self.mu.lock().await;
            self.st.borrow_mut().backoff_idx += 1;
            g.unlock().await;

            let g = self.mu.lock().await;
            if !self.ctx.has_fired() {
                self.update_connectivity_state(ConnectivityState::Idle, Some(err))
                    .await;
            }
            g.unlock().await;
            return;
        }
        let g = self.mu.lock().await;
        self.st.borrow_mut().backoff_idx = 0;
        g.unlock().await;
    }

    /// `ac.tryAllAddrs()`: the first error if no address connects.
    async fn try_all_addrs(
        self: &Rc<Self>,
        cc: &Rc<ChannelCore>,
        addrs: &[Address],
        connect_deadline: u64,
    ) -> Result<(), GrpcError> {
        let mut first_err = None;
        for addr in addrs {
            if self.ctx.has_fired() {
                return Err(GrpcError::new("grpc: the connection is closing"));
            }
            // The keepalive parameters are read under `ac.mu` and `cc.mu`.
            let g = self.mu.lock().await;
            let g2 = cc.mu.lock().await;
            g2.unlock().await;
            g.unlock().await;
            let id = self.id;
            cc.logger
                .info(|| {
                    format!(
                        "[{id}] Subchannel picks a new address {:?} to connect",
                        addr.addr
                    )
                })
                .await;
            match self.create_transport(cc, addr, connect_deadline).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| GrpcError::new("no addresses")))
    }

    /// `ac.createTransport()`.
    async fn create_transport(
        self: &Rc<Self>,
        cc: &Rc<ChannelCore>,
        addr: &Address,
        connect_deadline: u64,
    ) -> Result<(), GrpcError> {
        // `hctx`: cancelled by onClose, so a connection lost before it was
        // stored is noticed below.
        let id = self.id;
        let hctx = Rc::new(Event::new(id.name(&["sc", ".hctx"])));
        let Some(backend) = cc.network.get(&addr.addr) else {
            return Err(GrpcError::new(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {}: connect: connection refused\"",
                addr.addr
            )));
        };
        let conn = backend.dial(&self.ctx, connect_deadline).await?;

        // The transport's reader goroutine, started inside NewHTTP2Client.
        let (me, c, h) = (self.clone(), conn.clone(), hctx.clone());
        sim::go(id.name(&["transport.reader[sc", "]"]), async move {
            c.closed().wait().await;
            me.on_transport_close(&h).await;
        })
        .await;

        let g = self.mu.lock().await;
        if self.ctx.has_fired() {
            // Shut down while connecting: close the new transport.
            let c = conn.clone();
            sim::go("transport.close", async move { c.close().await }).await;
            g.unlock().await;
            return Ok(());
        }
        if hctx.has_fired() {
            self.update_connectivity_state(ConnectivityState::Idle, None)
                .await;
            g.unlock().await;
            return Ok(());
        }
        {
            let mut st = self.st.borrow_mut();
            st.cur_addr = Some(addr.clone());
            st.transport = Some(conn);
        }
        // startHealthCheck: no health check configured, so READY now.
        self.update_connectivity_state(ConnectivityState::Ready, None)
            .await;
        g.unlock().await;
        Ok(())
    }

    /// The transport's `onClose` callback.
    async fn on_transport_close(&self, hctx: &Event) {
        let g = self.mu.lock().await;
        if self.ctx.has_fired() {
            g.unlock().await;
            return;
        }
        hctx.fire().await;
        if self.st.borrow().transport.is_none() {
            g.unlock().await;
            return;
        }
        self.st.borrow_mut().transport = None;
        if let Some(cc) = self.cc.upgrade() {
            cc.resolve_now();
        }
        self.update_connectivity_state(ConnectivityState::Idle, None)
            .await;
        g.unlock().await;
    }

    /// `ac.getReadyTransport()`.
    pub(crate) async fn get_ready_transport(&self) -> Option<Rc<Connection>> {
        let g = self.mu.lock().await;
        let t = {
            let st = self.st.borrow();
            (st.state == ConnectivityState::Ready)
                .then(|| st.transport.clone())
                .flatten()
        };
        g.unlock().await;
        t
    }

    /// `acbw.closeProducers()`.
    async fn close_producers(&self) {
        let g = self.producers_mu.lock().await;
        g.unlock().await;
    }

    /// `ac.tearDown()`.
    pub(crate) async fn tear_down(&self) {
        let g = self.mu.lock().await;
        if self.st.borrow().state == ConnectivityState::Shutdown {
            g.unlock().await;
            return;
        }
        let cur_tr = self.st.borrow_mut().transport.take();
        self.update_connectivity_state(ConnectivityState::Shutdown, None)
            .await;
        self.ctx.fire().await;
        self.st.borrow_mut().cur_addr = None;
        if let Some(cc) = self.cc.upgrade() {
            let id = self.id;
            cc.logger
                .info(|| format!("[{id}] Subchannel deleted"))
                .await;
        }
        g.unlock().await;
        if let Some(t) = cur_tr {
            t.close().await;
        }
    }

    /// `ac.updateConnectivityState()` (with `mu` held) and
    /// `acbw.updateState()`: the listener runs on the balancer serializer.
    async fn update_connectivity_state(&self, s: ConnectivityState, err: Option<GrpcError>) {
        if self.st.borrow().state == s {
            return;
        }
        self.st.borrow_mut().state = s;
        sim::note(|| format!("{} -> {s}", self.id));
        let Some(cc) = self.cc.upgrade() else { return };
        let id = self.id;
        cc.logger
            .info(|| format!("[{id}] Subchannel Connectivity change to {s}"))
            .await;
        let me = self.rc();
        let last_listener = if s == ConnectivityState::Shutdown {
            self.state_listener.borrow_mut().take()
        } else {
            None
        };
        let serializer = cc.serializer();
        serializer
            .try_schedule(move |ctx| async move {
                let Some(cc) = me.cc.upgrade() else { return };
                if ctx.has_fired() || cc.balancer_closed() {
                    return;
                }
                me.close_producers().await;
                let g = me.health_mu.lock().await;
                me.health_gen.set(me.health_gen.get() + 1);
                me.health_state.set(s);
                g.unlock().await;
                let listener = last_listener.or_else(|| me.state_listener.borrow().clone());
                if let Some(l) = listener {
                    l(SubConnState {
                        connectivity_state: s,
                        connection_error: err,
                    })
                    .await;
                }
            })
            .await;
    }
}

impl SubConn for AddrConn {
    fn id(&self) -> SubConnId {
        self.id
    }

    fn addresses(&self) -> Vec<Address> {
        self.addrs.clone()
    }

    /// `acbw.Connect()`: `go ac.connect()`.
    fn connect(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let me = self.rc();
            let id = self.id;
            sim::go(id.name(&["addrConn.connect[sc", "]"]), me.connect_task()).await;
        })
    }

    /// `acbw.Shutdown()`: close the producers, then `cc.removeAddrConn(ac)`.
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.close_producers().await;
            if let Some(cc) = self.cc.upgrade() {
                cc.remove_addr_conn(&self.rc()).await;
            }
        })
    }

    /// `acbw.RegisterHealthListener()` with no health check configured.
    fn register_health_listener(&self, listener: StateListener) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.health_mu.lock().await;
            if self.health_state.get() != ConnectivityState::Ready {
                g.unlock().await;
                return;
            }
            self.health_gen.set(self.health_gen.get() + 1);
            let hd = self.health_gen.get();
            let Some(cc) = self.cc.upgrade() else {
                g.unlock().await;
                return;
            };
            let me = self.rc();
            cc.serializer()
                .try_schedule(move |ctx| async move {
                    let Some(cc) = me.cc.upgrade() else { return };
                    if ctx.has_fired() || cc.balancer_closed() {
                        return;
                    }
                    let g = me.health_mu.lock().await;
                    if me.health_gen.get() != hd {
                        g.unlock().await;
                        return;
                    }
                    // The no-op registration reports READY at once, through
                    // the listener wrapper: one more serializer callback.
                    let me2 = me.clone();
                    cc.serializer()
                        .try_schedule(move |ctx| async move {
                            let Some(cc) = me2.cc.upgrade() else { return };
                            if ctx.has_fired() || cc.balancer_closed() {
                                return;
                            }
                            let g = me2.health_mu.lock().await;
                            if me2.health_gen.get() != hd {
                                g.unlock().await;
                                return;
                            }
                            listener(SubConnState::new(ConnectivityState::Ready)).await;
                            g.unlock().await;
                        })
                        .await;
                    g.unlock().await;
                })
                .await;
            g.unlock().await;
        })
    }
}
