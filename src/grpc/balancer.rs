//! The load-balancing API the ported policies speak: grpc-go's `balancer`
//! package (Balancer, Builder, ClientConn, SubConn, State, Picker) and the
//! resolver types they carry, in the shape of grpc-go at commit `e0ac3acff`
//! (`balancer/balancer.go`, `balancer/subconn.go`, `resolver/resolver.go`).
//!
//! Every method that takes a lock, touches a channel or starts a goroutine in
//! Go is `async` here, so the kernel can interleave it. Trait methods return
//! boxed futures so policies can be held as trait objects, as Go holds them
//! as interfaces.

use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use super::connectivity::ConnectivityState;
use super::variant::Variant;

/// A boxed, non-`Send` future: what every async trait method returns.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An error value as Go passes `error`: compared by text where Go compares
/// by identity (the sentinel errors have fixed texts).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GrpcError(pub Rc<str>);

impl GrpcError {
    /// Copies `text` into the error (once: a literal is not made a
    /// `String` first).
    pub fn new(text: impl AsRef<str>) -> Self {
        GrpcError(Rc::from(text.as_ref()))
    }

    /// `format!("{prefix}{err}")` as an error, without the formatter.
    pub fn prefixed(prefix: &str, err: &GrpcError) -> Self {
        let mut text = String::with_capacity(prefix.len() + err.0.len());
        text.push_str(prefix);
        text.push_str(&err.0);
        GrpcError::new(text)
    }
}

impl fmt::Display for GrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One backend address. `path` is the hierarchical path grpc-go keeps in the
/// address attributes (`internal/hierarchy`): the first element names the
/// child policy that owns the address.
#[derive(Clone, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub struct Address {
    pub addr: Rc<str>,
}

impl Address {
    pub fn new(addr: &str) -> Self {
        Address {
            addr: Rc::from(addr),
        }
    }
}

/// A resolver endpoint: one or more addresses of one backend, plus its
/// hierarchical path.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Endpoint {
    pub addresses: Vec<Address>,
    pub path: Vec<Rc<str>>,
}

impl Endpoint {
    pub fn new(addr: &str) -> Self {
        Endpoint {
            addresses: vec![Address::new(addr)],
            path: Vec::new(),
        }
    }

    /// The endpoint with `child` prepended to its hierarchical path.
    pub fn in_child(mut self, child: &str) -> Self {
        self.path.insert(0, Rc::from(child));
        self
    }
}

/// `resolver.State` (only the endpoints and attributes matter to the
/// policies modelled).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ResolverState {
    pub endpoints: Vec<Endpoint>,
    pub attributes: Attributes,
}

/// `resolver.State.Attributes`: what the resolver hands the policies beside
/// the endpoints (the xDS resolver puts its xDS client there, and cds takes
/// it out). Compared by identity.
#[derive(Clone, Default)]
pub struct Attributes(pub Option<Rc<dyn Any>>);

impl Attributes {
    pub fn new<T: Any>(value: Rc<T>) -> Self {
        Attributes(Some(value))
    }

    /// The value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<Rc<T>> {
        self.0.clone()?.downcast::<T>().ok()
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Attributes {}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "{..}" } else { "{}" })
    }
}

/// `hierarchy.GroupEndpoints`: splits endpoints by the first element of their
/// path and strips it. Endpoints without a path are dropped.
pub fn group_endpoints(endpoints: &[Endpoint]) -> BTreeMap<Rc<str>, Vec<Endpoint>> {
    let mut out: BTreeMap<Rc<str>, Vec<Endpoint>> = BTreeMap::new();
    for e in endpoints {
        if let Some((first, rest)) = e.path.split_first() {
            out.entry(first.clone()).or_default().push(Endpoint {
                addresses: e.addresses.clone(),
                path: rest.to_vec(),
            });
        }
    }
    out
}

/// A parsed load-balancing config (`serviceconfig.LoadBalancingConfig`); each
/// policy downcasts it to its own type.
pub type LoadBalancingConfig = Rc<dyn Any>;

/// `balancer.ClientConnState`.
#[derive(Clone, Default)]
pub struct ClientConnState {
    pub resolver_state: ResolverState,
    pub balancer_config: Option<LoadBalancingConfig>,
}

impl fmt::Debug for ClientConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConnState")
            .field("resolver_state", &self.resolver_state)
            .field("balancer_config", &self.balancer_config.is_some())
            .finish()
    }
}

/// Why a pick did not return a SubConn.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PickError {
    /// `balancer.ErrNoSubConnAvailable`: queue the RPC until the next picker.
    NoSubConnAvailable,
    /// Fail the RPC (unless wait-for-ready) with this error.
    Failed(GrpcError),
}

impl fmt::Display for PickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickError::NoSubConnAvailable => f.write_str("no SubConn is available"),
            PickError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// What an RPC asks the picker.
#[derive(Clone, Debug, Default)]
pub struct PickInfo {
    /// The request's hash key (ring_hash's `address_hash` header), if any.
    pub hash_key: Option<Rc<str>>,
}

/// `balancer.Picker`. Picks are synchronous in Go too.
pub trait Picker {
    fn pick(&self, info: &PickInfo) -> Result<Rc<dyn SubConn>, PickError>;
    /// Short description for traces and test failures, e.g. `rr{sc1,sc2}`.
    fn describe(&self) -> String;
}

/// `base.NewErrPicker(err)`: fails every pick with `err`.
pub struct ErrPicker(pub PickError);

impl Picker for ErrPicker {
    fn pick(&self, _: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        Err(self.0.clone())
    }
    fn describe(&self) -> String {
        match &self.0 {
            PickError::NoSubConnAvailable => "queue".into(),
            PickError::Failed(e) => format!("err({e})"),
        }
    }
}

/// `balancer.State`: what a policy reports upward.
#[derive(Clone)]
pub struct BalancerState {
    pub connectivity_state: ConnectivityState,
    pub picker: Rc<dyn Picker>,
}

impl BalancerState {
    /// CONNECTING with a picker that queues picks: the initial state of a child.
    pub fn connecting_queue() -> Self {
        BalancerState {
            connectivity_state: ConnectivityState::Connecting,
            picker: Rc::new(ErrPicker(PickError::NoSubConnAvailable)),
        }
    }
}

impl fmt::Debug for BalancerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}/{}",
            self.connectivity_state,
            self.picker.describe()
        )
    }
}

/// `balancer.SubConnState`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SubConnState {
    pub connectivity_state: ConnectivityState,
    pub connection_error: Option<GrpcError>,
}

impl SubConnState {
    pub fn new(s: ConnectivityState) -> Self {
        SubConnState {
            connectivity_state: s,
            connection_error: None,
        }
    }
}

/// Identity of a SubConn (Go compares SubConn interface values).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SubConnId(pub u32);

impl SubConnId {
    /// The name `{parts[0]}{n}{parts[1]}` for this id's number `n`, without
    /// an allocation: `parts[0]` ends with the `sc` of the id's text, e.g.
    /// `id.name(&["sc", ".mu"])` reads `sc7.mu`.
    pub fn name(self, parts: &'static [&'static str; 2]) -> crate::sim::Name {
        debug_assert!(parts[0].ends_with("sc"));
        crate::sim::Name::indexed(parts, u64::from(self.0))
    }
}

impl fmt::Display for SubConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sc{}", self.0)
    }
}

/// `balancer.SubConn`.
pub trait SubConn {
    fn id(&self) -> SubConnId;
    fn addresses(&self) -> Vec<Address>;
    /// Starts connecting (IDLE -> CONNECTING).
    fn connect(&self) -> BoxFut<'_, ()>;
    /// Tears the SubConn down; a final SHUTDOWN state is delivered.
    fn shutdown(&self) -> BoxFut<'_, ()>;
    /// `SubConn.RegisterHealthListener`: the listener learns the SubConn's
    /// health while it is READY. The default stands for a channel without
    /// health checking (grpc-go's no-op registration): the listener is told
    /// READY from a new task, after the caller has released its locks.
    fn register_health_listener(&self, listener: StateListener) -> BoxFut<'_, ()> {
        Box::pin(async move {
            crate::sim::go("health_listener", async move {
                listener(SubConnState::new(ConnectivityState::Ready)).await;
            })
            .await;
        })
    }
}

/// The state listener of a SubConn (`NewSubConnOptions.StateListener`). In Go
/// it runs on the channel's serializer goroutine and may take locks.
pub type StateListener = Rc<dyn Fn(SubConnState) -> BoxFut<'static, ()>>;

/// The state listener of a layer that holds its `owner` weakly. A call
/// upgrades the owner (every caller awaits the listener at once, so this is
/// when it runs) and boxes the future `f` makes for it, the layer's own
/// future, without a wrapper; with the owner gone, or no future from `f`,
/// the call does nothing.
pub fn weak_listener<T, Fut>(
    owner: Weak<T>,
    f: impl Fn(Rc<T>, SubConnState) -> Option<Fut> + 'static,
) -> StateListener
where
    T: 'static,
    Fut: Future<Output = ()> + 'static,
{
    Rc::new(move |s: SubConnState| -> BoxFut<'static, ()> {
        match owner.upgrade().and_then(|o| f(o, s)) {
            Some(fut) => Box::pin(fut),
            None => Box::pin(async {}),
        }
    })
}

/// `balancer.NewSubConnOptions`.
#[derive(Clone)]
pub struct NewSubConnOptions {
    pub state_listener: Option<StateListener>,
}

/// `balancer.ClientConn`: what a policy calls upward.
pub trait ClientConn {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>>;
    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()>;
    fn resolve_now(&self) -> BoxFut<'_, ()>;
}

/// `balancer.Balancer` (with `ExitIdle` from `ExitIdler`).
pub trait Balancer {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>>;
    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()>;
    fn exit_idle(&self) -> BoxFut<'_, ()>;
    fn close(&self) -> BoxFut<'_, ()>;
}

/// Settings and shared state a policy gets at build time
/// (`balancer.BuildOptions` plus the package-level variables grpc-go tests
/// override, such as `DefaultSubBalancerCloseTimeout`).
#[derive(Clone)]
pub struct BuildOptions {
    pub variant: Variant,
    pub registry: Rc<Registry>,
    /// `priority.DefaultSubBalancerCloseTimeout` (0 disables the cache).
    pub sub_balancer_close_timeout: u64,
    /// `priority.DefaultPriorityInitTimeout`.
    pub priority_init_timeout: u64,
    /// Counts builds and closes of child policies, for the oracles.
    pub lifecycle: Rc<Lifecycle>,
    /// grpclog: the test logger or the default one.
    pub logger: super::grpclog::Logger,
}

/// `balancer.Builder`. Build is async because policies start goroutines.
pub trait Builder {
    fn name(&self) -> &str;
    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>>;
}

/// The policy registry (`balancer.Register` / `balancer.Get`), per run so
/// tests can register stubs.
///
/// A handful of builders, built per run: a list searched by name, which
/// copies no name (a later registration under a name replaces the earlier).
#[derive(Default)]
pub struct Registry {
    builders: Vec<Rc<dyn Builder>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, b: Rc<dyn Builder>) {
        match self.builders.iter_mut().find(|old| old.name() == b.name()) {
            Some(old) => *old = b,
            None => self.builders.push(b),
        }
    }

    pub fn get(&self, name: &str) -> Option<Rc<dyn Builder>> {
        self.builders.iter().find(|b| b.name() == name).cloned()
    }
}

/// Counts of policy instances built and closed in a run, by policy name, so
/// the end-of-run oracle can report children that were never closed.
#[derive(Default)]
pub struct Lifecycle {
    next_id: Cell<u32>,
    live: std::cell::RefCell<BTreeMap<u32, String>>,
    built: Cell<u32>,
    closed: Cell<u32>,
}

impl Lifecycle {
    /// Records a policy instance built; returns its instance id.
    pub fn built(&self, what: String) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.live.borrow_mut().insert(id, what);
        self.built.set(self.built.get() + 1);
        id
    }

    /// Records that instance `id` was closed.
    pub fn closed(&self, id: u32) {
        if self.live.borrow_mut().remove(&id).is_some() {
            self.closed.set(self.closed.get() + 1);
        }
    }

    /// Descriptions of instances built and not closed, in build order.
    pub fn unclosed(&self) -> Vec<String> {
        self.live.borrow().values().cloned().collect()
    }

    pub fn built_count(&self) -> u32 {
        self.built.get()
    }

    pub fn closed_count(&self) -> u32 {
        self.closed.get()
    }
}
