//! Open WebSocket connections on this replica, counted against `MAX_AGENT_CONNECTIONS`.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// The count of open connections; shared by every WebSocket handler and `/metrics`.
#[derive(Debug, Default)]
pub struct Connections(AtomicUsize);

/// Holds one connection slot until dropped.
pub struct ConnectionSlot(Arc<Connections>);

impl Connections {
    /// Connections open now.
    pub fn current(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub fn open(self: &Arc<Self>, limit: usize) -> Option<ConnectionSlot> {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            if current >= limit {
                return None;
            }
            match self.0.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}
