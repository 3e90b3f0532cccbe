pub mod cli;
pub mod sim;
