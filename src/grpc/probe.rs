//! The probe child policy and the recording parent ClientConn of the
//! validation harness (`validation/go/`): the same policy that the Go harness
//! registers, so that lbsim can simulate exactly what the harness measures on
//! the real grpc-go code. A probe reports the states the harness commands and
//! creates no SubConns; the parent tells the harness whose READY picker the
//! priority policy published. Builds and closes are counted by the
//! balancergroup's lifecycle record, like every child policy's.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use crate::sim::Unbounded;

use super::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState,
    GrpcError, NewSubConnOptions, PickError, PickInfo, Picker, SubConn,
};
use super::connectivity::ConnectivityState;

/// The name the probe policy is registered under, here and in the Go harness.
pub const NAME: &str = "lbsim_probe";

/// What the probes and the parent of one run share with the harness task.
pub struct ProbeWorld {
    /// Weak, so that the probes (which hold the world) form no cycle.
    probes: RefCell<BTreeMap<String, Weak<Probe>>>,
    /// A probe's name, sent when it first receives its config (the harness's
    /// buffered `built` channel).
    pub built: Unbounded<String>,
    /// The child whose READY picker reached the parent (the harness's
    /// buffered `ready` channel).
    pub ready: Unbounded<String>,
}

impl ProbeWorld {
    pub fn new() -> Rc<ProbeWorld> {
        Rc::new(ProbeWorld {
            probes: RefCell::new(BTreeMap::new()),
            built: Unbounded::new("harness.built"),
            ready: Unbounded::new("harness.ready"),
        })
    }

    /// The probe that received the config of child `name`.
    pub fn probe(&self, name: &str) -> Option<Rc<Probe>> {
        self.probes.borrow().get(name).and_then(Weak::upgrade)
    }

    /// Waits until the probe of child `name` has its config, as the harness
    /// waits on its `built` channel (other names are skipped).
    pub async fn wait_built(&self, name: &str) -> Option<()> {
        wait_for(&self.built, name).await
    }

    /// Waits until child `name`'s READY picker reached the parent.
    pub async fn wait_picker(&self, name: &str) -> Option<()> {
        wait_for(&self.ready, name).await
    }
}

/// Takes names from `queue` until `name` comes; `None` if it closed first.
async fn wait_for(queue: &Unbounded<String>, name: &str) -> Option<()> {
    while queue.get().await? != name {}
    Some(())
}

/// The probe's parsed config: the name of the child it serves.
pub struct ProbeConfig {
    pub name: String,
}

/// Builds probes into one run's [`ProbeWorld`].
pub struct ProbeBuilder {
    world: Rc<ProbeWorld>,
}

impl ProbeBuilder {
    pub fn new(world: Rc<ProbeWorld>) -> Self {
        ProbeBuilder { world }
    }
}

impl Builder for ProbeBuilder {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, cc: Rc<dyn ClientConn>, _: BuildOptions) -> BoxFut<'static, Rc<dyn Balancer>> {
        let world = self.world.clone();
        Box::pin(async move {
            Rc::new_cyclic(|me| Probe {
                world,
                cc,
                name: RefCell::new(String::new()),
                self_ref: me.clone(),
            }) as Rc<dyn Balancer>
        })
    }
}

/// A child policy that reports what it is told to.
pub struct Probe {
    world: Rc<ProbeWorld>,
    cc: Rc<dyn ClientConn>,
    name: RefCell<String>,
    self_ref: Weak<Probe>,
}

impl Probe {
    /// Reports `state` upward with a picker naming this child, as a child
    /// policy's `UpdateState` does.
    pub async fn report(&self, state: ConnectivityState) {
        let picker = Rc::new(ProbePicker {
            child: self.name.borrow().clone(),
        });
        self.cc
            .update_state(BalancerState {
                connectivity_state: state,
                picker,
            })
            .await;
    }
}

impl Balancer for Probe {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let cfg = s
                .balancer_config
                .and_then(|c| c.downcast::<ProbeConfig>().ok())
                .ok_or_else(|| GrpcError::new("probe: config of another type"))?;
            if self.name.borrow().is_empty() {
                *self.name.borrow_mut() = cfg.name.clone();
                // The world keeps the newest probe of each child.
                self.world
                    .probes
                    .borrow_mut()
                    .insert(cfg.name.clone(), self.self_ref.clone());
                let _ = self.world.built.put(cfg.name.clone()).await;
            }
            Ok(())
        })
    }

    fn resolver_error(&self, _: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

/// The picker a probe publishes: it names its child, so the parent can tell
/// whose picker is in use.
pub struct ProbePicker {
    pub child: String,
}

impl Picker for ProbePicker {
    fn pick(&self, _: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        Err(PickError::NoSubConnAvailable)
    }

    fn describe(&self) -> String {
        format!("probe({})", self.child)
    }
}

/// The fake parent ClientConn: tells the harness whose READY picker the
/// priority policy published.
pub struct ParentCc {
    world: Rc<ProbeWorld>,
}

impl ParentCc {
    pub fn new(world: Rc<ProbeWorld>) -> Self {
        ParentCc { world }
    }
}

impl ClientConn for ParentCc {
    fn new_sub_conn(
        &self,
        _: Vec<Address>,
        _: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async { Err(GrpcError::new("probe children create no SubConns")) })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if state.connectivity_state != ConnectivityState::Ready {
                return;
            }
            let desc = state.picker.describe();
            if let Some(child) = desc
                .strip_prefix("probe(")
                .and_then(|s| s.strip_suffix(')'))
            {
                let _ = self.world.ready.put(child.to_string()).await;
            }
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}
