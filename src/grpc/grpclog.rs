//! grpc-go's logging as the code under test reaches it.
//!
//! Every `logger.Infof` and `channelz.Info*` of the ported code goes through
//! `grpclog`. A Go test run under `grpctest` installs its test logger
//! (`internal/grpctest/tlogger.go` at `e0ac3acff`), which logs every
//! severity with no verbosity check: each Info takes the logger's one mutex,
//! shared by every goroutine of the process, and inside it `testing.T`'s
//! mutex (`t.Logf`). Those are scheduling points the leak race crosses
//! (`Remove` logs before it takes the outgoing lock), so a scenario that
//! models such a test switches the test logger on (`[client] test_logger`).
//! Anywhere else grpc-go's default logger drops Info without a lock, and so
//! does [`Logger::off`].
//!
//! Logs guarded by `logger.V(2)` are off under the test logger too (its
//! verbosity is 0 unless `GRPC_GO_LOG_VERBOSITY_LEVEL` is set), and are not
//! modelled.

use std::rc::Rc;

use crate::sim::{self, Mutex};

/// The process-wide logger.
#[derive(Clone, Default)]
pub struct Logger(Option<Rc<TestLogger>>);

struct TestLogger {
    /// `tLogger.mu`.
    mu: Mutex,
    /// The mutex `t.Logf` takes (`testing.common.mu`).
    t_mu: Mutex,
}

impl Logger {
    /// grpc-go's default logger: Info is discarded, nothing is locked.
    pub fn off() -> Self {
        Logger(None)
    }

    /// grpctest's test logger. Creates its mutexes, so call it inside a run.
    pub fn test() -> Self {
        Logger(Some(Rc::new(TestLogger {
            mu: Mutex::new("grpctest.tLogger.mu"),
            t_mu: Mutex::new("testing.T.mu"),
        })))
    }

    /// One Info-level log line (`text` is formatted only for a trace).
    pub async fn info(&self, text: impl FnOnce() -> String) {
        let Some(l) = &self.0 else { return };
        let g = l.mu.lock().await;
        sim::note(|| format!("log: {}", text()));
        let t = l.t_mu.lock().await;
        t.unlock().await;
        g.unlock().await;
    }
}
