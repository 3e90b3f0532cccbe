pub mod cli;
pub mod grpc;
pub mod net;
pub mod sim;
