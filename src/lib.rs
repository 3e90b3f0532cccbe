pub mod cli;
pub mod grpc;
pub mod report;
pub mod sim;
