//! Progress reporting, so that the command line can draw bars on a terminal
//! while the engine stays free of any terminal code.

/// Receives progress of long steps.
pub trait Progress: Send + Sync {
    /// A step starts; `total` when known.
    fn start(&self, _step: &str, _total: Option<u64>) {}
    /// Some units of the current step are done.
    fn advance(&self, _n: u64) {}
    /// The current step is finished.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
