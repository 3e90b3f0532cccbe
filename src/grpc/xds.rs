//! The parts of grpc-go's xDS client and resolver that the channel's close
//! path goes through, at `e0ac3acff`: `xds/internal/xdsclient` (its
//! serializer, watch cancellation, the pool's reference count and close),
//! `xds/internal/resolver/xds_resolver.go` (Close) and
//! `xds/internal/balancer/clusterresolver/resource_resolver.go` (stop).
//!
//! There is no management server or ADS stream: resource updates reach
//! cluster_resolver directly through [`XdsClient::eds`], and registering a
//! watch (at start-up, off the race's path) is not modelled. What is kept is
//! every step the close path takes in these components: each watch
//! cancellation is a callback on the xDS client's serializer that the caller
//! waits for (ADS unsubscription under the stream's mutex), and the
//! resolver's Close drops the pool's last reference, which closes the client
//! (its channels, its serializer). The ADS transport's own teardown (a second
//! gRPC channel to the management server) is left out.

use std::cell::Cell;
use std::rc::Rc;

use crate::grpc::clientconn::ClusterUpdate;
use crate::grpc::grpclog::Logger;
use crate::grpc::serializer::{CallbackSerializer, Ctx, serializer_names};
use crate::sim::{Event, Mutex, Unbounded};

/// The xDS client a channel's resolver creates through the client pool.
pub struct XdsClient {
    /// EDS updates for the cluster, as the watch delivers them.
    pub eds: Rc<Unbounded<ClusterUpdate>>,
    serializer: Rc<CallbackSerializer>,
    serializer_ctx: Ctx,
    /// The ADS stream's mutex (`adsStreamImpl.mu`).
    ads_mu: Mutex,
    /// `clientImpl.channelsMu`.
    channels_mu: Mutex,
    /// `Pool.mu` and the client's reference count.
    pool_mu: Mutex,
    refs: Cell<u32>,
    closed: Cell<bool>,
    logger: Logger,
}

impl XdsClient {
    /// `pool.NewClient`: a client with one reference, its serializer running.
    pub async fn new(logger: Logger) -> Rc<XdsClient> {
        let ctx: Ctx = Rc::new(Event::new("xdsclient.serializer.ctx"));
        let serializer =
            CallbackSerializer::new_static(serializer_names!("xdsclient.serializer"), ctx.clone())
                .await;
        Rc::new(XdsClient {
            eds: Rc::new(Unbounded::new("xds.eds.updates")),
            serializer,
            serializer_ctx: ctx,
            ads_mu: Mutex::new("xdsclient.ads.mu"),
            channels_mu: Mutex::new("xdsclient.channelsMu"),
            pool_mu: Mutex::new("xdsclient.pool.mu"),
            refs: Cell::new(1),
            closed: Cell::new(false),
            logger,
        })
    }

    /// The cancel function of a watch (`authority.unwatchResource`): the
    /// unsubscription runs on the client's serializer and the caller waits
    /// for it, or returns at once if the serializer has shut down.
    pub async fn cancel_watch(self: &Rc<Self>) {
        let done = Rc::new(Event::new("xdsclient.unwatch.done"));
        let (me, d) = (self.clone(), done.clone());
        let d2 = done.clone();
        self.serializer
            .schedule_or(
                move |_ctx| async move {
                    // The resource's last watcher: unsubscribe it on the
                    // ADS stream.
                    let g = me.ads_mu.lock().await;
                    g.unlock().await;
                    d.fire().await;
                },
                || async move {
                    d2.fire().await;
                },
            )
            .await;
        done.wait().await;
    }

    /// The pool's `clientRefCountedClose`: the last reference closes the
    /// client.
    pub async fn release(&self) {
        let g = self.pool_mu.lock().await;
        let refs = self.refs.get().saturating_sub(1);
        self.refs.set(refs);
        g.unlock().await;
        if refs == 0 {
            self.close().await;
        }
    }

    /// `clientImpl.close`.
    async fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        // The active xDS channels are collected under channelsMu and closed
        // outside it; closing one stops its ADS stream.
        let g = self.channels_mu.lock().await;
        g.unlock().await;
        let g = self.ads_mu.lock().await;
        g.unlock().await;
        self.serializer_ctx.fire().await;
        self.serializer.done().wait().await;
        self.logger.info(|| "xds client: Shutdown".into()).await;
    }
}

/// The xDS resolver of a channel: its serializer and its two watches
/// (listener and route configuration).
pub struct XdsResolver {
    client: Rc<XdsClient>,
    serializer: Rc<CallbackSerializer>,
    serializer_ctx: Ctx,
    logger: Logger,
}

impl XdsResolver {
    pub async fn build(client: Rc<XdsClient>, logger: Logger) -> Rc<XdsResolver> {
        let ctx: Ctx = Rc::new(Event::new("xdsResolver.serializer.ctx"));
        let serializer = CallbackSerializer::new_static(
            serializer_names!("xdsResolver.serializer"),
            ctx.clone(),
        )
        .await;
        Rc::new(XdsResolver {
            client,
            serializer,
            serializer_ctx: ctx,
            logger,
        })
    }

    /// `xdsResolver.Close`: stop its serializer and wait for it, cancel both
    /// watches, release the client.
    pub async fn close(&self) {
        self.serializer_ctx.fire().await;
        self.serializer.done().wait().await;
        self.client.cancel_watch().await;
        self.client.cancel_watch().await;
        self.client.release().await;
        self.logger.info(|| "xds resolver: Shutdown".into()).await;
    }
}

/// cluster_resolver's `resourceResolver`: its mutex and its serializer (the
/// EDS watch's updates are delivered through [`XdsClient::eds`]).
pub struct ResourceResolver {
    client: Rc<XdsClient>,
    mu: Mutex,
    serializer: Rc<CallbackSerializer>,
    serializer_ctx: Ctx,
    /// Whether the EDS discovery mechanism is still watching.
    watching: Cell<bool>,
}

impl ResourceResolver {
    pub async fn new(client: Rc<XdsClient>) -> ResourceResolver {
        let ctx: Ctx = Rc::new(Event::new("resourceResolver.serializer.ctx"));
        let serializer = CallbackSerializer::new_static(
            serializer_names!("resourceResolver.serializer"),
            ctx.clone(),
        )
        .await;
        ResourceResolver {
            client,
            mu: Mutex::new("resourceResolver.mu"),
            serializer,
            serializer_ctx: ctx,
            watching: Cell::new(true),
        }
    }

    /// `resourceResolver.stop(closing)`: forget the mechanisms under `mu`,
    /// stop the EDS one (a watch cancellation), and when closing, stop the
    /// serializer and wait for it. The empty update Go then pushes to its
    /// update channel is read by no one once cluster_resolver is closing,
    /// and is not modelled.
    pub async fn stop(&self, closing: bool) {
        let g = self.mu.lock().await;
        let was_watching = self.watching.replace(false);
        g.unlock().await;
        if was_watching {
            self.client.cancel_watch().await;
        }
        if closing {
            self.serializer_ctx.fire().await;
            self.serializer.done().wait().await;
        }
    }
}
