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

    /// Wait for the next item, then take it and up to `max - 1` more that are already queued,
    /// oldest first. Single consumer.
    pub async fn pop_batch(&self, max: usize) -> Vec<T> {
        loop {
            {
                let mut q = self.lock();
                if !q.is_empty() {
                    let n = q.len().min(max.max(1));
                    return q.drain(..n).collect();
                }
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
        assert_eq!(o.pop_batch(8).await, vec![2, 3]);
        assert_eq!(o.len(), 0);
    }

    #[tokio::test]
    async fn pop_batch_takes_what_is_queued_up_to_the_limit_in_order() {
        let o = Outbox::new(8);
        for i in 1..=5 {
            o.push(i);
        }
        assert_eq!(o.pop_batch(3).await, vec![1, 2, 3]);
        assert_eq!(o.pop_batch(3).await, vec![4, 5]);
        assert_eq!(o.len(), 0);
    }

    #[tokio::test]
    async fn pop_wakes_on_a_later_push() {
        let o = Outbox::new(4);
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.pop_batch(8).await });
        tokio::task::yield_now().await;
        o.push(7);
        assert_eq!(waiter.await.ok(), Some(vec![7]));
    }
}
