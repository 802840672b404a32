//! The queue between the agent daemon and the connection: pushing never blocks, and when
//! it is full the oldest message goes (a fresh bid or report beats a stale one).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Outbox<T> {
    queue: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
}

impl<T> Outbox<T> {
    pub fn new(capacity: usize) -> Arc<Outbox<T>> {
        Arc::new(Outbox { queue: Mutex::new(VecDeque::new()), capacity: capacity.max(1), ready: Notify::new(), dropped: AtomicU64::new(0) })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `item`; returns true when an older item was dropped to make room.
    pub fn push(&self, item: T) -> bool {
        let dropped = {
            let mut q = self.lock();
            let dropped = q.len() >= self.capacity && q.pop_front().is_some();
            q.push_back(item);
            dropped
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // One consumer: a stored permit covers a push that lands before it waits.
        self.ready.notify_one();
        dropped
    }

    /// Wait for the next item. Single consumer.
    pub async fn pop(&self) -> T {
        loop {
            if let Some(item) = self.lock().pop_front() {
                return item;
            }
            self.ready.notified().await;
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_outbox_drops_the_oldest_and_counts_it() {
        let o = Outbox::new(2);
        assert!(!o.push(1));
        assert!(!o.push(2));
        assert!(o.push(3));
        assert_eq!(o.dropped(), 1);
        assert_eq!((o.pop().await, o.pop().await), (2, 3));
        assert_eq!(o.len(), 0);
    }

    #[tokio::test]
    async fn pop_wakes_on_a_later_push() {
        let o = Outbox::new(4);
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.pop().await });
        tokio::task::yield_now().await;
        o.push(7);
        assert_eq!(waiter.await.ok(), Some(7));
    }
}
