//! Ports of grpc-go at `e0ac3acff`:
//! `balancer/pickfirst/pickfirstleaf/pickfirstleaf.go` (`pick_first`),
//! `balancer/endpointsharding/endpointsharding.go` and
//! `balancer/roundrobin/roundrobin.go` (`round_robin` = endpointsharding
//! over one pick_first per endpoint, with the health listener enabled and
//! auto-reconnect on IDLE).
//!
//! Simplified: pick_first's happy-eyeballs timer is not modelled. It is only
//! armed while another address of the same endpoint is pending, and every
//! endpoint here has one address. Address interleaving by IP family and
//! shuffling are dropped for the same reason. A TF picker without a
//! connection error (Go's nil error) fails with the text `<nil>`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState,
    Endpoint, ErrPicker, GrpcError, NewSubConnOptions, PickError, PickInfo, Picker, ResolverState,
    SubConn, SubConnState, weak_listener,
};
use crate::grpc::connectivity::ConnectivityState;
use crate::sim::{self, GoMap, Mutex};

/// Registered name of pick_first.
pub const PICK_FIRST: &str = "pick_first";
/// Registered name of round_robin.
pub const ROUND_ROBIN: &str = "round_robin";

/// `balancer.ErrBadResolverState`.
pub fn err_bad_resolver_state() -> GrpcError {
    GrpcError::new("bad resolver state")
}

fn nil_error() -> GrpcError {
    GrpcError::new("<nil>")
}

// ---------------------------------------------------------------- pick_first

/// `pickfirstleaf.scData`.
struct ScData {
    sub_conn: RefCell<Option<Rc<dyn SubConn>>>,
    addr: Address,
    raw_connectivity_state: Cell<ConnectivityState>,
    effective_state: Cell<ConnectivityState>,
    last_err: RefCell<Option<GrpcError>>,
    connection_failed_in_first_pass: Cell<bool>,
}

impl ScData {
    fn sc(&self) -> Rc<dyn SubConn> {
        self.sub_conn.borrow().clone().expect("SubConn created")
    }

    /// Forgets the SubConn of an entry that left the map and was shut down.
    /// The SubConn's listener holds this entry, so the pair would otherwise
    /// keep each other alive after the run (Go's collector frees them).
    /// Only active entries reach `sc()`, so nothing observes the change.
    fn release(&self) {
        self.sub_conn.borrow_mut().take();
    }
}

/// `pickfirstleaf.addressList`.
#[derive(Default)]
struct AddressList {
    addresses: Vec<Address>,
    idx: usize,
}

impl AddressList {
    fn is_valid(&self) -> bool {
        self.idx < self.addresses.len()
    }
    fn size(&self) -> usize {
        self.addresses.len()
    }
    fn increment(&mut self) -> bool {
        if !self.is_valid() {
            return false;
        }
        self.idx += 1;
        self.idx < self.addresses.len()
    }
    fn current_address(&self) -> Option<Address> {
        self.addresses.get(self.idx).cloned()
    }
    fn reset(&mut self) {
        self.idx = 0;
    }
    fn update_addrs(&mut self, addrs: Vec<Address>) {
        self.addresses = addrs;
        self.reset();
    }
    fn seek_to(&mut self, needle: &Address) -> bool {
        match self.addresses.iter().position(|a| a == needle) {
            Some(i) => {
                self.idx = i;
                true
            }
            None => false,
        }
    }
}

struct PfState {
    state: ConnectivityState,
    sub_conns: GoMap<Address, Rc<ScData>>,
    address_list: AddressList,
    first_pass: bool,
    num_tf: usize,
    health_checking_enabled: bool,
}

/// `pickfirstleaf.pickfirstBalancer`.
pub struct PickFirst {
    cc: Rc<dyn ClientConn>,
    mu: Mutex,
    st: RefCell<PfState>,
    /// Set by round_robin (`EnableHealthListener` on the resolver state).
    health_listener_attr: bool,
    lifecycle: Rc<crate::grpc::balancer::Lifecycle>,
    instance: u32,
    me: Weak<PickFirst>,
}

/// `pickfirstleaf.picker`.
struct PfPicker {
    result: Option<Rc<dyn SubConn>>,
    err: PickError,
}

impl Picker for PfPicker {
    fn pick(&self, _: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        self.result.clone().ok_or_else(|| self.err.clone())
    }
    fn describe(&self) -> String {
        match &self.result {
            Some(sc) => format!("pf{{{}}}", sc.id()),
            None => ErrPicker(self.err.clone()).describe(),
        }
    }
}

/// `pickfirstleaf.idlePicker`: the first pick asks the policy to leave IDLE.
/// Picks are synchronous, so the ExitIdle (which takes the policy's mutex)
/// runs in a new task.
struct IdlePicker {
    pf: Weak<PickFirst>,
    used: Cell<bool>,
}

impl Picker for IdlePicker {
    fn pick(&self, _: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        if !self.used.replace(true)
            && let Some(pf) = self.pf.upgrade()
        {
            sim::spawn("pick_first.exit_idle", async move { pf.exit_idle().await });
        }
        Err(PickError::NoSubConnAvailable)
    }
    fn describe(&self) -> String {
        "idle".into()
    }
}

fn connecting_state() -> BalancerState {
    BalancerState {
        connectivity_state: ConnectivityState::Connecting,
        picker: Rc::new(PfPicker {
            result: None,
            err: PickError::NoSubConnAvailable,
        }),
    }
}

fn tf_state(err: Option<GrpcError>) -> BalancerState {
    BalancerState {
        connectivity_state: ConnectivityState::TransientFailure,
        picker: Rc::new(PfPicker {
            result: None,
            err: PickError::Failed(err.unwrap_or_else(nil_error)),
        }),
    }
}

impl PickFirst {
    pub fn new(cc: Rc<dyn ClientConn>, opts: &BuildOptions, health_listener: bool) -> Rc<Self> {
        let instance = opts.lifecycle.built(PICK_FIRST.to_string());
        Rc::new_cyclic(|me| PickFirst {
            cc,
            mu: Mutex::new("pick_first.mu"),
            st: RefCell::new(PfState {
                state: ConnectivityState::Connecting,
                sub_conns: GoMap::new(),
                address_list: AddressList::default(),
                first_pass: false,
                num_tf: 0,
                health_checking_enabled: false,
            }),
            health_listener_attr: health_listener,
            lifecycle: opts.lifecycle.clone(),
            instance,
            me: me.clone(),
        })
    }

    async fn resolver_error_locked(&self, err: GrpcError) {
        let (state, size) = {
            let st = self.st.borrow();
            (st.state, st.address_list.size())
        };
        if state != ConnectivityState::TransientFailure && size > 0 {
            return;
        }
        self.update_balancer_state(tf_state(Some(GrpcError::new(format!(
            "name resolver error: {err}"
        )))))
        .await;
    }

    async fn update_client_conn_state_locked(
        &self,
        state: ClientConnState,
    ) -> Result<(), GrpcError> {
        if state.resolver_state.endpoints.is_empty() {
            self.close_sub_conns_locked().await;
            self.st.borrow_mut().address_list.update_addrs(Vec::new());
            self.resolver_error_locked(GrpcError::new("produced zero addresses"))
                .await;
            return Err(err_bad_resolver_state());
        }
        self.st.borrow_mut().health_checking_enabled = self.health_listener_attr;
        let mut new_addrs: Vec<Address> = Vec::new();
        for e in &state.resolver_state.endpoints {
            for a in &e.addresses {
                if !new_addrs.contains(a) {
                    new_addrs.push(a.clone());
                }
            }
        }
        let (prev_addr, prev_ready, prev_count) = {
            let st = self.st.borrow();
            let prev = st.address_list.current_address();
            let ready = prev
                .as_ref()
                .and_then(|a| st.sub_conns.get(a))
                .is_some_and(|sd| sd.raw_connectivity_state.get() == ConnectivityState::Ready);
            (prev, ready, st.address_list.size())
        };
        {
            let mut st = self.st.borrow_mut();
            st.address_list.update_addrs(new_addrs.clone());
            if prev_ready
                && st
                    .address_list
                    .seek_to(prev_addr.as_ref().expect("ready addr"))
            {
                return Ok(());
            }
        }
        self.reconcile_sub_conns_locked(&new_addrs).await;
        let state_now = self.st.borrow().state;
        if prev_ready || state_now == ConnectivityState::Connecting || prev_count == 0 {
            self.force_update_concluded_state_locked(connecting_state())
                .await;
            self.start_first_pass_locked().await;
        } else if state_now == ConnectivityState::TransientFailure {
            self.start_first_pass_locked().await;
        }
        Ok(())
    }

    async fn start_first_pass_locked(&self) {
        {
            let mut st = self.st.borrow_mut();
            st.first_pass = true;
            st.num_tf = 0;
            for (_, sd) in st.sub_conns.iter_sorted() {
                sd.connection_failed_in_first_pass.set(false);
            }
        }
        self.request_connection_locked().await;
    }

    async fn close_sub_conns_locked(&self) {
        let sds: Vec<Rc<ScData>> = {
            let mut st = self.st.borrow_mut();
            st.sub_conns
                .drain_go_order()
                .into_iter()
                .map(|(_, v)| v)
                .collect()
        };
        for sd in sds {
            sd.sc().shutdown().await;
            sd.release();
        }
    }

    async fn reconcile_sub_conns_locked(&self, new_addrs: &[Address]) {
        let old: Vec<Address> = self.st.borrow().sub_conns.keys_go_order();
        for a in old {
            if new_addrs.contains(&a) {
                continue;
            }
            let sd = self.st.borrow_mut().sub_conns.remove(&a);
            if let Some(sd) = sd {
                sd.sc().shutdown().await;
                sd.release();
            }
        }
    }

    async fn shutdown_remaining_locked(&self, selected: &Rc<ScData>) {
        let others: Vec<Rc<ScData>> = {
            let st = self.st.borrow();
            let mut all = st.sub_conns.values_go_order();
            all.retain(|sd| !Rc::ptr_eq(sd, selected));
            all
        };
        for sd in &others {
            sd.sc().shutdown().await;
        }
        {
            let mut st = self.st.borrow_mut();
            // Already only the selected entry (the common case): nothing to
            // replace.
            let only_selected = st.sub_conns.len() == 1
                && st
                    .sub_conns
                    .get(&selected.addr)
                    .is_some_and(|sd| Rc::ptr_eq(sd, selected));
            if !only_selected {
                st.sub_conns = GoMap::new();
                st.sub_conns.insert(selected.addr.clone(), selected.clone());
            }
        }
        for sd in others {
            sd.release();
        }
    }

    async fn new_sc_data(&self, addr: Address) -> Result<Rc<ScData>, GrpcError> {
        let sd = Rc::new(ScData {
            sub_conn: RefCell::new(None),
            addr: addr.clone(),
            raw_connectivity_state: Cell::new(ConnectivityState::Idle),
            effective_state: Cell::new(ConnectivityState::Idle),
            last_err: RefCell::new(None),
            connection_failed_in_first_pass: Cell::new(false),
        });
        let sd2 = sd.clone();
        let listener = weak_listener(self.me.clone(), move |pf, s| {
            Some(pf.update_sub_conn_state(sd2.clone(), s))
        });
        let sc = self
            .cc
            .new_sub_conn(
                vec![addr],
                NewSubConnOptions {
                    state_listener: Some(listener),
                },
            )
            .await?;
        *sd.sub_conn.borrow_mut() = Some(sc);
        Ok(sd)
    }

    fn request_connection_locked(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if !self.st.borrow().address_list.is_valid() {
                return;
            }
            let mut last_err: Option<GrpcError>;
            loop {
                let cur = self
                    .st
                    .borrow()
                    .address_list
                    .current_address()
                    .expect("valid list");
                let existing = self.st.borrow().sub_conns.get(&cur).cloned();
                let sd = match existing {
                    Some(sd) => sd,
                    None => match self.new_sc_data(cur.clone()).await {
                        Ok(sd) => {
                            self.st
                                .borrow_mut()
                                .sub_conns
                                .insert(cur.clone(), sd.clone());
                            sd
                        }
                        Err(_) => return,
                    },
                };
                match sd.raw_connectivity_state.get() {
                    ConnectivityState::Idle => {
                        sd.sc().connect().await;
                        // scheduleNextConnectionLocked: no timer with one
                        // address per endpoint.
                        return;
                    }
                    ConnectivityState::TransientFailure => {
                        sd.connection_failed_in_first_pass.set(true);
                        last_err = sd.last_err.borrow().clone();
                    }
                    ConnectivityState::Connecting => return,
                    _ => return,
                }
                if !self.st.borrow_mut().address_list.increment() {
                    break;
                }
            }
            self.end_first_pass_if_possible_locked(last_err).await;
        })
    }

    /// The listener's future. It owns the balancer, so the listener boxes
    /// it as it is, and is an async block, which keeps its arguments once.
    #[allow(clippy::manual_async_fn)] // an async fn would store its arguments twice
    fn update_sub_conn_state(
        self: Rc<Self>,
        sd: Rc<ScData>,
        new_state: SubConnState,
    ) -> impl Future<Output = ()> + 'static {
        async move {
            let g = self.mu.lock().await;
            self.update_sub_conn_state_locked(&sd, new_state).await;
            g.unlock().await;
        }
    }

    fn is_active_sc_data(&self, sd: &Rc<ScData>) -> bool {
        self.st
            .borrow()
            .sub_conns
            .get(&sd.addr)
            .is_some_and(|a| Rc::ptr_eq(a, sd))
    }

    async fn update_sub_conn_state_locked(&self, sd: &Rc<ScData>, new_state: SubConnState) {
        use ConnectivityState::*;
        let new = new_state.connectivity_state;
        let old_state = sd.raw_connectivity_state.replace(new);
        if !self.is_active_sc_data(sd) {
            return;
        }
        if new == Shutdown {
            sd.effective_state.set(Shutdown);
            return;
        }
        if new == TransientFailure {
            sd.connection_failed_in_first_pass.set(true);
        }
        if new == Ready {
            self.shutdown_remaining_locked(sd).await;
            if !self.st.borrow_mut().address_list.seek_to(&sd.addr) {
                return;
            }
            if !self.st.borrow().health_checking_enabled {
                sd.effective_state.set(Ready);
                self.update_balancer_state(BalancerState {
                    connectivity_state: Ready,
                    picker: Rc::new(PfPicker {
                        result: Some(sd.sc()),
                        err: PickError::NoSubConnAvailable,
                    }),
                })
                .await;
                return;
            }
            sd.effective_state.set(Connecting);
            self.update_balancer_state_connecting().await;
            let sd2 = sd.clone();
            let health = weak_listener(self.me.clone(), move |pf, s| {
                let sd = sd2.clone();
                Some(async move { pf.update_sub_conn_health_state(&sd, s).await })
            });
            sd.sc().register_health_listener(health).await;
            return;
        }
        if old_state == Ready || (old_state == Connecting && new == Idle) {
            self.shutdown_remaining_locked(sd).await;
            sd.effective_state.set(new);
            self.st.borrow_mut().address_list.reset();
            self.update_balancer_state(BalancerState {
                connectivity_state: Idle,
                picker: Rc::new(IdlePicker {
                    pf: self.me.clone(),
                    used: Cell::new(false),
                }),
            })
            .await;
            return;
        }
        if self.st.borrow().first_pass {
            match new {
                Connecting if sd.effective_state.get() != TransientFailure => {
                    sd.effective_state.set(Connecting);
                    self.update_balancer_state_connecting().await;
                }
                TransientFailure => {
                    *sd.last_err.borrow_mut() = new_state.connection_error.clone();
                    sd.effective_state.set(TransientFailure);
                    let is_current =
                        self.st.borrow().address_list.current_address().as_ref() == Some(&sd.addr);
                    if is_current && self.st.borrow_mut().address_list.increment() {
                        self.request_connection_locked().await;
                        return;
                    }
                    self.end_first_pass_if_possible_locked(new_state.connection_error)
                        .await;
                }
                _ => {}
            }
            return;
        }
        match new {
            TransientFailure => {
                let fire = {
                    let mut st = self.st.borrow_mut();
                    let n = st.sub_conns.len().max(1);
                    st.num_tf = (st.num_tf + 1) % n;
                    st.num_tf.is_multiple_of(n)
                };
                *sd.last_err.borrow_mut() = new_state.connection_error.clone();
                if fire {
                    self.update_balancer_state(tf_state(new_state.connection_error))
                        .await;
                }
            }
            Idle => sd.sc().connect().await,
            _ => {}
        }
    }

    async fn end_first_pass_if_possible_locked(&self, last_err: Option<GrpcError>) {
        let idle: Vec<Rc<ScData>> = {
            let st = self.st.borrow();
            if st.address_list.is_valid() {
                return;
            }
            let sds = st.sub_conns.iter_go_order();
            if sds
                .iter()
                .any(|(_, sd)| !sd.connection_failed_in_first_pass.get())
            {
                return;
            }
            sds.into_iter().map(|(_, v)| v.clone()).collect()
        };
        self.st.borrow_mut().first_pass = false;
        self.update_balancer_state(tf_state(last_err)).await;
        for sd in idle {
            if sd.raw_connectivity_state.get() == ConnectivityState::Idle {
                sd.sc().connect().await;
            }
        }
    }

    async fn update_sub_conn_health_state(&self, sd: &Rc<ScData>, state: SubConnState) {
        let g = self.mu.lock().await;
        if self.is_active_sc_data(sd) {
            sd.effective_state.set(state.connectivity_state);
            match state.connectivity_state {
                ConnectivityState::Ready => {
                    self.update_balancer_state(BalancerState {
                        connectivity_state: ConnectivityState::Ready,
                        picker: Rc::new(PfPicker {
                            result: Some(sd.sc()),
                            err: PickError::NoSubConnAvailable,
                        }),
                    })
                    .await
                }
                ConnectivityState::TransientFailure => {
                    let e = state.connection_error.unwrap_or_else(nil_error);
                    self.update_balancer_state(tf_state(Some(GrpcError::new(format!(
                        "pickfirst: health check failure: {e}"
                    )))))
                    .await
                }
                ConnectivityState::Connecting => self.update_balancer_state_connecting().await,
                _ => {}
            }
        }
        g.unlock().await;
    }

    async fn update_balancer_state(&self, new_state: BalancerState) {
        let cur = self.st.borrow().state;
        if new_state.connectivity_state == cur && cur != ConnectivityState::TransientFailure {
            return;
        }
        self.force_update_concluded_state_locked(new_state).await;
    }

    /// `updateBalancerState` to CONNECTING with a queueing picker; the
    /// picker is only made when the state changes.
    async fn update_balancer_state_connecting(&self) {
        if self.st.borrow().state == ConnectivityState::Connecting {
            return;
        }
        self.force_update_concluded_state_locked(connecting_state())
            .await;
    }

    async fn force_update_concluded_state_locked(&self, new_state: BalancerState) {
        self.st.borrow_mut().state = new_state.connectivity_state;
        self.cc.update_state(new_state).await;
    }
}

impl Balancer for PickFirst {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let g = self.mu.lock().await;
            let r = self.update_client_conn_state_locked(s).await;
            g.unlock().await;
            r
        })
    }

    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.mu.lock().await;
            self.resolver_error_locked(err).await;
            g.unlock().await;
        })
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.mu.lock().await;
            if self.st.borrow().state == ConnectivityState::Idle {
                self.start_first_pass_locked().await;
            }
            g.unlock().await;
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.mu.lock().await;
            self.close_sub_conns_locked().await;
            self.st.borrow_mut().state = ConnectivityState::Shutdown;
            self.lifecycle.closed(self.instance);
            g.unlock().await;
        })
    }
}

/// Builds pick_first (health listener disabled, as for a channel-level
/// pick_first).
pub struct PickFirstBuilder;

impl Builder for PickFirstBuilder {
    fn name(&self) -> &str {
        PICK_FIRST
    }
    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        Box::pin(async move { PickFirst::new(cc, &opts, false) as Rc<dyn Balancer> })
    }
}

// --------------------------------------------------------- endpointsharding

/// Identity of an endpoint (`resolver.EndpointMap` compares address sets).
type EndpointKey = Vec<Address>;

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut k = e.addresses.clone();
    k.sort();
    k
}

/// `endpointsharding.balancerWrapper`: the ClientConn one child sees.
struct EsChild {
    child: RefCell<Option<Rc<dyn Balancer>>>,
    cc: Rc<dyn ClientConn>,
    es: Weak<EndpointSharding>,
    state: RefCell<BalancerState>,
    is_closed: Cell<bool>,
    me: Weak<EsChild>,
}

impl EsChild {
    /// `bw.ExitIdle()`: in a new task, under the parent's child mutex.
    async fn exit_idle(&self) {
        let (Some(es), Some(me)) = (self.es.upgrade(), self.me.upgrade()) else {
            return;
        };
        sim::go("endpointsharding.exit_idle", async move {
            let g = es.child_mu.lock().await;
            if !me.is_closed.get() {
                let child = me.child.borrow().clone();
                if let Some(c) = child {
                    c.exit_idle().await;
                }
            }
            g.unlock().await;
        })
        .await;
    }

    async fn close_locked(&self) {
        let child = self.child.borrow_mut().take();
        if let Some(c) = child {
            c.close().await;
        }
        self.is_closed.set(true);
    }
}

impl ClientConn for EsChild {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        self.cc.new_sub_conn(addrs, opts)
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Some(es) = self.es.upgrade() else { return };
            let idle = state.connectivity_state == ConnectivityState::Idle;
            let g = es.mu.lock().await;
            *self.state.borrow_mut() = state;
            g.unlock().await;
            if idle {
                self.exit_idle().await;
            }
            es.update_state().await;
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        self.cc.resolve_now()
    }
}

type ChildBuilderFn = Rc<dyn Fn(Rc<dyn ClientConn>, &BuildOptions) -> Rc<dyn Balancer>>;

/// `endpointsharding.endpointSharding` (auto-reconnect enabled).
pub struct EndpointSharding {
    cc: Rc<dyn ClientConn>,
    opts: BuildOptions,
    child_builder: ChildBuilderFn,
    child_mu: Mutex,
    children: RefCell<Rc<GoMap<EndpointKey, Rc<EsChild>>>>,
    inhibit_child_updates: Cell<bool>,
    mu: Mutex,
    me: Weak<EndpointSharding>,
}

/// `pickerWithChildStates`: round robin over the children's pickers.
struct EsPicker {
    pickers: Vec<Rc<dyn Picker>>,
    next: Cell<usize>,
}

impl Picker for EsPicker {
    fn pick(&self, info: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        let n = self.next.get().wrapping_add(1);
        self.next.set(n);
        self.pickers[n % self.pickers.len()].pick(info)
    }
    fn describe(&self) -> String {
        let inner: Vec<String> = self.pickers.iter().map(|p| p.describe()).collect();
        format!("rr[{}]", inner.join(","))
    }
}

impl EndpointSharding {
    fn new(cc: Rc<dyn ClientConn>, opts: BuildOptions, child_builder: ChildBuilderFn) -> Rc<Self> {
        Rc::new_cyclic(|me| EndpointSharding {
            cc,
            opts,
            child_builder,
            child_mu: Mutex::new("endpointsharding.childMu"),
            children: RefCell::new(Rc::new(GoMap::new())),
            inhibit_child_updates: Cell::new(false),
            mu: Mutex::new("endpointsharding.mu"),
            me: me.clone(),
        })
    }

    async fn update_state(&self) {
        if self.inhibit_child_updates.get() {
            return;
        }
        let g = self.mu.lock().await;
        let children = self.children.borrow().clone();
        // Go sorts the pickers into one list per state and takes the first
        // non-empty list in the order READY, CONNECTING, IDLE, TF: keep only
        // the list of the best state seen so far.
        let rank = |s: ConnectivityState| match s {
            ConnectivityState::Ready => 0,
            ConnectivityState::Connecting => 1,
            ConnectivityState::Idle => 2,
            ConnectivityState::TransientFailure => 3,
            ConnectivityState::Shutdown => 4,
        };
        let mut best: Option<ConnectivityState> = None;
        let mut pickers: Vec<Rc<dyn Picker>> = Vec::with_capacity(children.len());
        let mut visit = |child: &Rc<EsChild>| {
            let st = child.state.borrow();
            let s = st.connectivity_state;
            if s == ConnectivityState::Shutdown {
                return;
            }
            match best {
                Some(b) if rank(b) < rank(s) => return,
                Some(b) if rank(b) == rank(s) => {}
                _ => {
                    best = Some(s);
                    pickers.clear();
                }
            }
            pickers.push(st.picker.clone());
        };
        if children.len() > 1 {
            children.values_go_order().iter().for_each(&mut visit);
        } else {
            // One child or none: Go's order is the only order (and the
            // shuffle draws nothing).
            children.iter_sorted().for_each(|(_, c)| visit(c));
        }
        let (agg, pickers) = if let Some(b) = best {
            (b, pickers)
        } else {
            let p: Rc<dyn Picker> = Rc::new(ErrPicker(PickError::Failed(GrpcError::new(
                "no children to pick from",
            ))));
            (ConnectivityState::TransientFailure, vec![p])
        };
        let next = (sim::random_u64() % pickers.len() as u64) as usize;
        self.cc
            .update_state(BalancerState {
                connectivity_state: agg,
                picker: Rc::new(EsPicker {
                    pickers,
                    next: Cell::new(next),
                }),
            })
            .await;
        g.unlock().await;
    }

    async fn update_client_conn_state_locked(
        &self,
        state: &ClientConnState,
    ) -> Result<(), GrpcError> {
        let children = self.children.borrow().clone();
        let mut new_children: GoMap<EndpointKey, Rc<EsChild>> = GoMap::new();
        let mut ret = Ok(());
        for endpoint in &state.resolver_state.endpoints {
            let key = endpoint_key(endpoint);
            if new_children.contains_key(&key) {
                continue;
            }
            let child = match children.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let c = Rc::new_cyclic(|me| EsChild {
                        child: RefCell::new(None),
                        cc: self.cc.clone(),
                        es: self.me.clone(),
                        state: RefCell::new(BalancerState {
                            // Go's zero value: IDLE, until the child reports.
                            connectivity_state: ConnectivityState::Idle,
                            picker: Rc::new(ErrPicker(PickError::NoSubConnAvailable)),
                        }),
                        is_closed: Cell::new(false),
                        me: me.clone(),
                    });
                    let b = (self.child_builder)(c.clone(), &self.opts);
                    *c.child.borrow_mut() = Some(b);
                    c
                }
            };
            new_children.insert(key, child.clone());
            let b = child.child.borrow().clone();
            if let Some(b) = b {
                let r = b
                    .update_client_conn_state(ClientConnState {
                        resolver_state: ResolverState {
                            endpoints: vec![endpoint.clone()],
                            attributes: state.resolver_state.attributes.clone(),
                        },
                        balancer_config: state.balancer_config.clone(),
                    })
                    .await;
                if r.is_err() && ret.is_ok() {
                    ret = r;
                }
            }
        }
        for (key, child) in children.iter_go_order() {
            if !new_children.contains_key(&key) {
                child.close_locked().await;
            }
        }
        let empty = new_children.is_empty();
        *self.children.borrow_mut() = Rc::new(new_children);
        if empty {
            return Err(err_bad_resolver_state());
        }
        ret
    }
}

impl Balancer for EndpointSharding {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let g = self.child_mu.lock().await;
            self.inhibit_child_updates.set(true);
            let r = self.update_client_conn_state_locked(&s).await;
            self.inhibit_child_updates.set(false);
            self.update_state().await;
            g.unlock().await;
            r
        })
    }

    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.child_mu.lock().await;
            self.inhibit_child_updates.set(true);
            let children = self.children.borrow().clone();
            for (_, c) in children.iter_go_order() {
                let b = c.child.borrow().clone();
                if let Some(b) = b {
                    b.resolver_error(err.clone()).await;
                }
            }
            self.inhibit_child_updates.set(false);
            self.update_state().await;
            g.unlock().await;
        })
    }

    /// endpointsharding has no ExitIdle at this commit: a no-op.
    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.child_mu.lock().await;
            let children = self.children.borrow().clone();
            for (_, c) in children.iter_go_order() {
                c.close_locked().await;
            }
            g.unlock().await;
        })
    }
}

/// `round_robin`: records its own lifecycle around endpointsharding.
struct RoundRobin {
    es: Rc<EndpointSharding>,
    lifecycle: Rc<crate::grpc::balancer::Lifecycle>,
    instance: u32,
}

impl Balancer for RoundRobin {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        self.es.update_client_conn_state(s)
    }
    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        self.es.resolver_error(err)
    }
    fn exit_idle(&self) -> BoxFut<'_, ()> {
        self.es.exit_idle()
    }
    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.es.close().await;
            self.lifecycle.closed(self.instance);
        })
    }
}

/// Builds round_robin under a given name (`another-round-robin` in the Go
/// tests is round_robin registered under another name).
pub struct RoundRobinBuilder {
    pub name: String,
}

impl RoundRobinBuilder {
    pub fn new() -> Self {
        RoundRobinBuilder {
            name: ROUND_ROBIN.to_string(),
        }
    }
}

impl Default for RoundRobinBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder for RoundRobinBuilder {
    fn name(&self) -> &str {
        &self.name
    }
    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        let name = self.name.clone();
        Box::pin(async move {
            let instance = opts.lifecycle.built(name);
            opts.logger.info(|| "round_robin: Created".into()).await;
            let lifecycle = opts.lifecycle.clone();
            let child_builder: ChildBuilderFn =
                Rc::new(|cc, opts| PickFirst::new(cc, opts, true) as Rc<dyn Balancer>);
            Rc::new(RoundRobin {
                es: EndpointSharding::new(cc, opts, child_builder),
                lifecycle,
                instance,
            }) as Rc<dyn Balancer>
        })
    }
}
