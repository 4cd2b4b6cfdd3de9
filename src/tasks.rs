//! Where the manager's async tasks run: one executor driven by a worker thread per core but
//! one, so that TLS handshakes and sessions use the cores of a bigger box (smol's global
//! executor is one thread), and task sets that end the tasks they started when they are
//! dropped, so a listener or the dialer that stops also ends its connections and lets go of
//! what they hold.

use smol::{Executor, Task};
use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A handle to spawn on the workers' executor.
pub type Spawner = Arc<Executor<'static>>;

/// The executor and its threads; a thread that calls [`Workers::block_on`] works too.
pub struct Workers {
    ex: Spawner,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// `threads` worker threads named `NAME-N`.
    pub fn start(name: &str, threads: usize) -> std::io::Result<Workers> {
        let ex: Spawner = Arc::new(Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let threads = (1..=threads)
            .map(|n| {
                let (ex, stopped) = (ex.clone(), stopped.clone());
                std::thread::Builder::new()
                    .name(format!("{name}-{n}"))
                    .spawn(move || {
                        let _ = smol::block_on(ex.run(stopped.recv()));
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Workers {
            ex,
            stop: Some(stop),
            threads,
        })
    }

    /// A worker per core but one, the caller's thread (in [`Workers::block_on`]) being one of
    /// them: the core left over runs the store writer, the I/O reactor and the blocking pool.
    /// On 2 cores that is the caller's thread alone; a second worker there was measured to cost
    /// 10-20% more CPU per session (threads waking each other) for no more sessions per second.
    pub fn per_core_but_one(name: &str) -> std::io::Result<Workers> {
        Workers::start(name, cores().saturating_sub(2))
    }

    pub fn spawner(&self) -> Spawner {
        self.ex.clone()
    }

    /// Runs `future` to its end on this thread, working on the other tasks meanwhile.
    pub fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        smol::block_on(self.ex.run(future))
    }
}

impl Drop for Workers {
    /// Stops and joins the threads; the executor then drops whatever tasks are left.
    fn drop(&mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The cores this process may use.
/// Most threads of the blocking pool (`smol::unblock`: a session's store reads, activations,
/// API requests). Its default, 500, let a saturated manager grow to 130 idle threads that never
/// exit (the pool only shrinks above its limit), each holding the allocator's per-thread pages:
/// 311 MiB for 10,000 computers, against 57 MiB with 8 threads, which also activated agents
/// 1.6 times as fast (`picket bench --data-dir`, 10,000 agents, 128 at a time). The work is
/// CPU-bound, so more threads than cores only queue in the kernel instead of in the pool.
pub fn limit_blocking_threads() {
    let limit = (cores() * 4).clamp(8, 64);
    if let Some(limit) = std::num::NonZeroUsize::new(limit) {
        blocking::set_max_blocking_threads(limit);
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Tasks spawned on a [`Spawner`] that are cancelled when the set is dropped.
pub struct TaskSet {
    ex: Spawner,
    tasks: Vec<Task<()>>,
    /// How many were left at the last sweep of finished tasks: sweeping again only once the
    /// set has doubled keeps spawning O(1) on average however many run.
    after_sweep: usize,
}

impl TaskSet {
    pub fn new(ex: Spawner) -> TaskSet {
        TaskSet {
            ex,
            tasks: Vec::new(),
            after_sweep: 0,
        }
    }

    pub fn spawn(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        if self.tasks.len() >= (2 * self.after_sweep).max(64) {
            self.tasks.retain(|t| !t.is_finished());
            self.after_sweep = self.tasks.len();
        }
        self.tasks.push(self.ex.spawn(future));
    }

    /// Tasks spawned and not yet seen finished (finished ones go at the next sweep).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn tasks_run_on_every_worker() {
        let workers = Workers::start("test-worker", 1).unwrap();
        let threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let mut set = TaskSet::new(workers.spawner());
        workers.block_on(async {
            for _ in 0..1000 {
                let (threads, done) = (threads.clone(), done.clone());
                set.spawn(async move {
                    // Blocking on purpose: the other worker must take the next tasks.
                    std::thread::sleep(Duration::from_micros(200));
                    threads.lock().unwrap().insert(std::thread::current().id());
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            while done.load(Ordering::SeqCst) < 1000 {
                crate::clock::Clock::sleep(
                    &crate::clock::RealClock::new(),
                    Duration::from_millis(5),
                )
                .await;
            }
        });
        assert_eq!(threads.lock().unwrap().len(), 2);
    }

    #[test]
    fn finished_tasks_are_swept_as_the_set_grows() {
        let workers = Workers::start("test-worker", 1).unwrap();
        let mut set = TaskSet::new(workers.spawner());
        workers.block_on(async {
            for i in 0..10_000 {
                set.spawn(async {});
                if i % 100 == 0 {
                    crate::clock::Clock::sleep(
                        &crate::clock::RealClock::new(),
                        Duration::from_millis(1),
                    )
                    .await;
                }
            }
        });
        // Without the sweep it would hold all 10,000.
        assert!(set.held() <= 256, "{}", set.held());
    }

    #[test]
    fn dropping_the_set_cancels_its_tasks() {
        let workers = Workers::start("test-worker", 1).unwrap();
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let mut set = TaskSet::new(workers.spawner());
        for _ in 0..10 {
            let guard = Guard(dropped.clone());
            set.spawn(async move {
                let _guard = guard;
                smol::future::pending::<()>().await;
            });
        }
        workers.block_on(crate::clock::Clock::sleep(
            &crate::clock::RealClock::new(),
            Duration::from_millis(20),
        ));
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(set);
        workers.block_on(crate::clock::Clock::sleep(
            &crate::clock::RealClock::new(),
            Duration::from_millis(20),
        ));
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
    }
}
