//! Port of grpc-go `xds/internal/balancer/priority/ignore_resolve_now.go` at
//! `e0ac3acff`: a ClientConn wrapper that can drop the child's ResolveNow
//! calls; the flag can change while the child is live.

use std::cell::Cell;
use std::rc::Rc;

use crate::grpc::balancer::{
    Address, BalancerState, BoxFut, ClientConn, GrpcError, NewSubConnOptions, SubConn,
};

pub struct IgnoreResolveNowClientConn {
    cc: Rc<dyn ClientConn>,
    ignore_resolve_now: Cell<bool>,
}

impl IgnoreResolveNowClientConn {
    pub fn new(cc: Rc<dyn ClientConn>, ignore: bool) -> Rc<Self> {
        Rc::new(IgnoreResolveNowClientConn {
            cc,
            ignore_resolve_now: Cell::new(ignore),
        })
    }

    /// An atomic store in Go.
    pub fn update_ignore_resolve_now(&self, ignore: bool) {
        self.ignore_resolve_now.set(ignore);
    }
}

impl ClientConn for IgnoreResolveNowClientConn {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        self.cc.new_sub_conn(addrs, opts)
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        self.cc.update_state(state)
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if !self.ignore_resolve_now.get() {
                self.cc.resolve_now().await;
            }
        })
    }
}
