pub mod cli;
pub mod grpc;
pub mod sim;
