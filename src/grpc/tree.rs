//! Registration of the policies this crate ports below and around the
//! priority policy (grpc-go registers them in each package's `init()` at
//! `e0ac3acff`): `pick_first`, `round_robin` and
//! `outlier_detection_experimental`, and the policies above the priority
//! policy in the xDS tree: `xds_cluster_manager_experimental` and
//! `cds_experimental`.

use std::rc::Rc;

use crate::grpc::balancer::Registry;
use crate::grpc::leaf::{PickFirstBuilder, RoundRobinBuilder};
use crate::grpc::outlier_detection::OutlierDetectionBuilder;

/// Registers pick_first, round_robin, outlier_detection_experimental,
/// priority_experimental, xds_cluster_manager_experimental and
/// cds_experimental.
pub fn register_builtin(reg: &mut Registry) {
    reg.register(Rc::new(crate::grpc::priority::PriorityBuilder));
    reg.register(Rc::new(PickFirstBuilder));
    reg.register(Rc::new(RoundRobinBuilder::new()));
    reg.register(Rc::new(OutlierDetectionBuilder));
    reg.register(Rc::new(crate::grpc::clientconn::ClusterManagerBuilder));
    reg.register(Rc::new(crate::grpc::clientconn::CdsBuilder));
}
