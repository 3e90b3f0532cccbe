//! Port of grpc-go `xds/internal/balancer/outlierdetection/balancer.go` and
//! `subconn_wrapper.go` at `e0ac3acff`: the outlier-detection policy with
//! its persistent `run()` task, the goroutine that leaked in issue #7783.
//!
//! `run()` serves two unbounded queues: SubConn state and health updates on
//! their way down to the child, and the child's picker updates (and config
//! markers) on their way up to the parent. Close fires `closed`, waits for
//! `run()` to return (`done`), closes the child, then closes both queues.
//!
//! Simplified: no ejection. The real test's cluster has no outlier
//! detection config, so the config is a no-op: there is no interval timer,
//! no call counting and no ejection updates. The child sits behind the
//! synchronizing wrapper's mutex without a gracefulswitch (the child policy
//! never changes here). The wrapped picker does not unwrap the SubConn
//! wrapper: it reports the inner SubConn's id, which is what the channel
//! looks SubConns up by. Every SubConn is taken to be managed by pick_first
//! (one address), so the health listener is always enabled on the wrapper.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState,
    GrpcError, Lifecycle, NewSubConnOptions, PickError, PickInfo, Picker, StateListener, SubConn,
    SubConnId, SubConnState, weak_listener,
};
use crate::grpc::connectivity::ConnectivityState;
use crate::grpc::priority::ChildPolicy;
use crate::sim::Name;
use crate::sim::{self, Event, Mutex, OneshotSender, Unbounded, oneshot, select};

/// Registered name of the policy.
pub const NAME: &str = "outlier_detection_experimental";

/// `outlierdetection.LBConfig` without the ejection settings (all absent,
/// so the config is a no-op), plus the name of the priority child this
/// instance serves, for traces.
#[derive(Clone)]
pub struct OdConfig {
    pub child_policy: ChildPolicy,
    pub child_name: String,
}

impl OdConfig {
    pub fn new(child_policy: &str, child_name: &str) -> Self {
        OdConfig {
            child_policy: ChildPolicy {
                name: child_policy.to_string(),
                config: None,
            },
            child_name: child_name.to_string(),
        }
    }

    /// A config with neither success-rate nor failure-percentage ejection.
    fn noop_config(&self) -> bool {
        true
    }
}

enum ScUpdate {
    State(Rc<SubConnWrapper>, SubConnState),
    Health(Rc<SubConnWrapper>, SubConnState),
}

enum PickerUpdate {
    State(BalancerState),
    Config { noop: bool, done: OneshotSender<()> },
}

/// `synchronizingBalancerWrapper` (over the child directly).
struct SyncChild {
    mu: Mutex,
    lb: RefCell<Option<Rc<dyn Balancer>>>,
    name: RefCell<Option<String>>,
}

impl SyncChild {
    fn lb(&self) -> Option<Rc<dyn Balancer>> {
        self.lb.borrow().clone()
    }
}

/// `outlierDetectionBalancer`.
pub struct OutlierDetection {
    cc: Rc<dyn ClientConn>,
    opts: BuildOptions,
    child_state: RefCell<Option<BalancerState>>,
    recent_picker_noop: Cell<bool>,
    closed: Event,
    done: Event,
    child: SyncChild,
    mu: Mutex,
    cfg: RefCell<Option<Rc<OdConfig>>>,
    inhibit_picker_updates: Cell<bool>,
    update_unconditionally: Cell<bool>,
    sc_update_ch: Unbounded<ScUpdate>,
    picker_update_ch: Unbounded<PickerUpdate>,
    lifecycle: Rc<Lifecycle>,
    instance: u32,
    me: Weak<OutlierDetection>,
}

/// The ClientConn the child sees: a weak handle, so the child does not keep
/// its parent alive.
struct OdClientConn(Weak<OutlierDetection>);

impl ClientConn for OdClientConn {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(od) => od.new_sub_conn(addrs, opts).await,
                None => Err(GrpcError::new("outlier detection balancer is gone")),
            }
        })
    }

    /// `b.UpdateState`: only queued; `run()` forwards it.
    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(od) = self.0.upgrade() {
                let _ = od.picker_update_ch.put(PickerUpdate::State(state)).await;
            }
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(od) = self.0.upgrade() {
                od.cc.resolve_now().await;
            }
        })
    }
}

/// `wrappedPicker`.
struct WrappedPicker {
    child_picker: Rc<dyn Picker>,
}

impl Picker for WrappedPicker {
    fn pick(&self, info: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        self.child_picker.pick(info)
    }
    fn describe(&self) -> String {
        self.child_picker.describe()
    }
}

impl OutlierDetection {
    /// `bb.Build`: starts `run()`.
    pub async fn build(cc: Rc<dyn ClientConn>, opts: BuildOptions) -> Rc<OutlierDetection> {
        let instance = opts.lifecycle.built(NAME.to_string());
        opts.logger
            .info(|| "outlier_detection: Created".into())
            .await;
        let lifecycle = opts.lifecycle.clone();
        let b = Rc::new_cyclic(|me| OutlierDetection {
            cc,
            opts,
            child_state: RefCell::new(None),
            recent_picker_noop: Cell::new(false),
            closed: Event::new("outlier_detection.closed"),
            done: Event::new("outlier_detection.done"),
            child: SyncChild {
                mu: Mutex::new("outlier_detection.child.mu"),
                lb: RefCell::new(None),
                name: RefCell::new(None),
            },
            mu: Mutex::new("outlier_detection.mu"),
            cfg: RefCell::new(None),
            inhibit_picker_updates: Cell::new(false),
            update_unconditionally: Cell::new(false),
            sc_update_ch: Unbounded::new("outlier_detection.scUpdateCh"),
            picker_update_ch: Unbounded::new("outlier_detection.pickerUpdateCh"),
            lifecycle,
            instance,
            me: me.clone(),
        });
        let runner = b.clone();
        sim::go(
            Name::indexed(&["outlier_detection.run[od", "]"], u64::from(instance)),
            async move {
                runner.run().await;
            },
        )
        .await;
        b
    }

    /// `synchronizingBalancerWrapper.switchTo`: builds the child policy.
    async fn switch_to(&self, name: &str) -> Result<(), GrpcError> {
        let Some(builder) = self.opts.registry.get(name) else {
            return Err(GrpcError::new(format!(
                "outlier detection: child balancer {name:?} not registered"
            )));
        };
        let g = self.child.mu.lock().await;
        let old = self.child.lb.borrow_mut().take();
        if let Some(old) = old {
            old.close().await;
        }
        let cc: Rc<dyn ClientConn> = Rc::new(OdClientConn(self.me.clone()));
        let lb = builder.build(cc, self.opts.clone()).await;
        *self.child.lb.borrow_mut() = Some(lb);
        *self.child.name.borrow_mut() = Some(name.to_string());
        g.unlock().await;
        Ok(())
    }

    /// The listener's future. It owns the balancer, so the listener boxes
    /// it as it is, and is an async block, which keeps its arguments once.
    #[allow(clippy::manual_async_fn)] // an async fn would store its arguments twice
    fn update_sub_conn_state(
        self: Rc<Self>,
        scw: Rc<SubConnWrapper>,
        state: SubConnState,
    ) -> impl Future<Output = ()> + 'static {
        async move {
            let g = self.mu.lock().await;
            scw.set_latest_connectivity_state(state.connectivity_state)
                .await;
            let _ = self.sc_update_ch.put(ScUpdate::State(scw, state)).await;
            g.unlock().await;
        }
    }

    async fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> Result<Rc<dyn SubConn>, GrpcError> {
        let scw = Rc::new_cyclic(|me| SubConnWrapper {
            inner: RefCell::new(None),
            id: Cell::new(SubConnId(u32::MAX)),
            addresses: addrs.clone(),
            listener: opts.state_listener.clone(),
            health_listener_enabled: addrs.len() == 1,
            mu: Mutex::new("outlier_detection.scw.mu"),
            health_listener: RefCell::new(None),
            latest_received_connectivity_state: Cell::new(ConnectivityState::Idle),
            od: self.me.clone(),
            me: me.clone(),
        });
        let w = scw.clone();
        let listener = weak_listener(self.me.clone(), move |od, s| {
            Some(od.update_sub_conn_state(w.clone(), s))
        });
        let g = self.mu.lock().await;
        let r = self
            .cc
            .new_sub_conn(
                addrs,
                NewSubConnOptions {
                    state_listener: Some(listener),
                },
            )
            .await;
        let r = match r {
            Ok(sc) => {
                scw.id.set(sc.id());
                *scw.inner.borrow_mut() = Some(sc);
                Ok(scw as Rc<dyn SubConn>)
            }
            Err(e) => Err(e),
        };
        g.unlock().await;
        r
    }

    async fn handle_child_state_update(&self, u: BalancerState) {
        *self.child_state.borrow_mut() = Some(u.clone());
        let g = self.mu.lock().await;
        if self.inhibit_picker_updates.get() {
            self.update_unconditionally.set(true);
            g.unlock().await;
            return;
        }
        let noop = self.cfg.borrow().as_ref().is_none_or(|c| c.noop_config());
        g.unlock().await;
        self.recent_picker_noop.set(noop);
        self.cc
            .update_state(BalancerState {
                connectivity_state: u.connectivity_state,
                picker: Rc::new(WrappedPicker {
                    child_picker: u.picker,
                }),
            })
            .await;
    }

    async fn handle_lb_config_update(&self, noop: bool, done: OneshotSender<()>) {
        let child_state = self.child_state.borrow().clone();
        if let Some(cs) = child_state
            && (noop != self.recent_picker_noop.get() || self.update_unconditionally.get())
        {
            self.recent_picker_noop.set(noop);
            self.cc
                .update_state(BalancerState {
                    connectivity_state: cs.connectivity_state,
                    picker: Rc::new(WrappedPicker {
                        child_picker: cs.picker,
                    }),
                })
                .await;
        }
        self.inhibit_picker_updates.set(false);
        self.update_unconditionally.set(false);
        done.send(()).await;
    }

    async fn run(&self) {
        loop {
            let which = select(&[&self.sc_update_ch, &self.picker_update_ch, &self.closed]).await;
            match which {
                0 => {
                    let Some(update) = self.sc_update_ch.try_get() else {
                        break;
                    };
                    if self.closed.has_fired() {
                        break;
                    }
                    match update {
                        ScUpdate::State(scw, state) => {
                            scw.clear_health_listener().await;
                            let g = self.child.mu.lock().await;
                            scw.update_sub_conn_connectivity_state(state).await;
                            g.unlock().await;
                        }
                        ScUpdate::Health(scw, state) => {
                            let g = self.child.mu.lock().await;
                            scw.update_sub_conn_health_state(state).await;
                            g.unlock().await;
                        }
                    }
                }
                1 => {
                    let Some(update) = self.picker_update_ch.try_get() else {
                        break;
                    };
                    if self.closed.has_fired() {
                        break;
                    }
                    match update {
                        PickerUpdate::State(s) => self.handle_child_state_update(s).await,
                        PickerUpdate::Config { noop, done } => {
                            self.handle_lb_config_update(noop, done).await
                        }
                    }
                }
                _ => break,
            }
        }
        self.done.fire().await;
    }
}

impl Balancer for OutlierDetection {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let Some(cfg) = s
                .balancer_config
                .as_ref()
                .and_then(|c| c.clone().downcast::<OdConfig>().ok())
            else {
                return Err(crate::grpc::leaf::err_bad_resolver_state());
            };
            if self.opts.registry.get(&cfg.child_policy.name).is_none() {
                return Err(GrpcError::new(format!(
                    "outlier detection: child balancer {:?} not registered",
                    cfg.child_policy.name
                )));
            }
            let switch =
                self.child.name.borrow().as_deref() != Some(cfg.child_policy.name.as_str());
            if switch {
                self.switch_to(&cfg.child_policy.name).await?;
            }
            sim::note(|| {
                format!(
                    "outlier_detection od{} serves {}",
                    self.instance, cfg.child_name
                )
            });

            let g = self.mu.lock().await;
            self.inhibit_picker_updates.set(true);
            self.update_unconditionally.set(false);
            *self.cfg.borrow_mut() = Some(cfg.clone());
            // A no-op config: onNoopConfig has no ejected endpoint to restore.
            g.unlock().await;

            let g = self.child.mu.lock().await;
            let err = match self.child.lb() {
                Some(lb) => {
                    lb.update_client_conn_state(ClientConnState {
                        resolver_state: s.resolver_state.clone(),
                        balancer_config: cfg.child_policy.config.clone(),
                    })
                    .await
                }
                None => Ok(()),
            };
            g.unlock().await;

            let (tx, rx) = oneshot::<()>("outlier_detection.lbCfgUpdate.done");
            let _ = self
                .picker_update_ch
                .put(PickerUpdate::Config {
                    noop: cfg.noop_config(),
                    done: tx,
                })
                .await;
            rx.recv().await;
            err
        })
    }

    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.child.mu.lock().await;
            if let Some(lb) = self.child.lb() {
                lb.resolver_error(err).await;
            }
            g.unlock().await;
        })
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.child.mu.lock().await;
            if let Some(lb) = self.child.lb() {
                lb.exit_idle().await;
            }
            g.unlock().await;
        })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.closed.fire().await;
            self.done.wait().await;
            let g = self.child.mu.lock().await;
            let lb = self.child.lb.borrow_mut().take();
            if let Some(lb) = lb {
                lb.close().await;
            }
            g.unlock().await;
            self.sc_update_ch.close().await;
            self.picker_update_ch.close().await;
            // No interval timer to stop (no-op config).
            let g = self.mu.lock().await;
            g.unlock().await;
            self.lifecycle.closed(self.instance);
        })
    }
}

/// `subConnWrapper`.
pub struct SubConnWrapper {
    inner: RefCell<Option<Rc<dyn SubConn>>>,
    id: Cell<SubConnId>,
    addresses: Vec<Address>,
    listener: Option<StateListener>,
    health_listener_enabled: bool,
    mu: Mutex,
    health_listener: RefCell<Option<StateListener>>,
    latest_received_connectivity_state: Cell<ConnectivityState>,
    od: Weak<OutlierDetection>,
    me: Weak<SubConnWrapper>,
}

impl SubConnWrapper {
    fn inner(&self) -> Rc<dyn SubConn> {
        self.inner.borrow().clone().expect("wrapped SubConn set")
    }

    async fn set_latest_connectivity_state(&self, s: ConnectivityState) {
        let g = self.mu.lock().await;
        self.latest_received_connectivity_state.set(s);
        g.unlock().await;
    }

    async fn clear_health_listener(&self) {
        let g = self.mu.lock().await;
        *self.health_listener.borrow_mut() = None;
        g.unlock().await;
    }

    async fn update_sub_conn_health_state(&self, scs: SubConnState) {
        let g = self.mu.lock().await;
        let l = self.health_listener.borrow().clone();
        if let Some(l) = l {
            l(scs).await;
        }
        g.unlock().await;
    }

    async fn update_sub_conn_connectivity_state(&self, scs: SubConnState) {
        if let Some(l) = &self.listener {
            l(scs).await;
        }
    }
}

impl SubConn for SubConnWrapper {
    fn id(&self) -> SubConnId {
        self.id.get()
    }

    fn addresses(&self) -> Vec<Address> {
        self.addresses.clone()
    }

    fn connect(&self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.inner().connect().await })
    }

    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.inner().shutdown().await })
    }

    fn register_health_listener(&self, listener: StateListener) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if !self.health_listener_enabled {
                return;
            }
            let g = self.mu.lock().await;
            if self.latest_received_connectivity_state.get() != ConnectivityState::Ready {
                g.unlock().await;
                return;
            }
            *self.health_listener.borrow_mut() = Some(listener);
            let me = self.rc();
            let wrapper = weak_listener(self.od.clone(), move |od, scs| {
                me.clone().map(|me| async move {
                    let _ = od.sc_update_ch.put(ScUpdate::Health(me, scs)).await;
                })
            });
            self.inner().register_health_listener(wrapper).await;
            g.unlock().await;
        })
    }
}

impl SubConnWrapper {
    fn rc(&self) -> Option<Rc<SubConnWrapper>> {
        self.me.upgrade()
    }
}

/// Builds outlier_detection.
pub struct OutlierDetectionBuilder;

impl Builder for OutlierDetectionBuilder {
    fn name(&self) -> &str {
        NAME
    }
    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        Box::pin(async move { OutlierDetection::build(cc, opts).await as Rc<dyn Balancer> })
    }
}
