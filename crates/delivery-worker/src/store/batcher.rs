//! Many concurrent writers, one statement: a [`Batcher`] collects items submitted from any task and hands them to
//! its write function in batches, each caller getting its own answer.
//!
//! There is no timer: an item that arrives while the previous batch is being written joins the next one, so a
//! quiet worker writes each item at once and a busy one amortises the round trip and the WAL flush over many.

use std::future::Future;
use tokio::sync::{mpsc, oneshot};

/// Largest batch one write takes.
pub const MAX_BATCH: usize = 512;

type Pending<T, R> = (T, oneshot::Sender<R>);

pub struct Batcher<T, R> {
    queue: mpsc::Sender<Pending<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Batcher { queue: self.queue.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the task that writes batches with `write`, which must answer every item of a batch, in order.
    pub fn spawn<W, F>(write: W) -> Self
    where
        W: Fn(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Vec<R>> + Send,
    {
        let (queue, mut incoming) = mpsc::channel::<Pending<T, R>>(4 * MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut items = vec![first.0];
                let mut replies = vec![first.1];
                while items.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok((item, reply)) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let answers = write(items).await;
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
        });
        Batcher { queue }
    }

    /// Submits one item and waits for its answer; `None` when the writer task is gone.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_caller_gets_its_own_answer_and_concurrent_items_share_a_batch() {
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move {
                tokio::task::yield_now().await;
                items.into_iter().map(|i| i * 2).collect::<Vec<_>>()
            }
        });
        let answers = futures::future::join_all((0..100).map(|i| batcher.submit(i))).await;
        assert_eq!(answers, (0..100).map(|i| Some(i * 2)).collect::<Vec<_>>());
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.len() < 100, "items submitted together were written together: {sizes:?}");
    }
}
