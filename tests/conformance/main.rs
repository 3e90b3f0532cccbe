//! Conformance tests: the scenarios of grpc-go's priority and balancergroup
//! unit tests at `e0ac3acff` (reference: `grpc-priority-semantics.md` §1 and
//! §2), and the close-is-terminal checks of §2.2 and §4.3.2, driven through
//! the kernel over several seeds each.

mod after_close;
mod balancergroup;
mod balancergroup_rr;
mod gracefulswitch;
mod harness;
mod priority;
mod priority_misc;
mod priority_rr;
