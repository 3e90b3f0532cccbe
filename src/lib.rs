pub mod cli;
pub mod experiment;
pub mod grpc;
pub mod net;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod validation;
