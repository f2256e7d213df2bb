//! openraft's [`AsyncRuntime`] on glommio: tasks are spawned on the current
//! executor (the shard running the quorum) and detached, so dropping a handle does
//! not cancel its task (as with tokio); timers are glommio timers; oneshots are
//! `futures`' (they work across threads, so the log's thread can answer).

use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend};

/// The runtime.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GlommioRuntime;

/// A spawned task that ended without an output (its executor stopped).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the task was cancelled (its executor stopped)")]
pub struct JoinError;

/// A detached task's handle.
pub struct JoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.ok_or(JoinError))
    }
}

/// A sleep that ends at its deadline.
pub struct Sleep(glommio::timer::Timer);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A deadline passed before the future finished.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("timed out")]
pub struct Elapsed;

/// `future`, or [`Elapsed`] at the deadline.
pub struct Timeout<R, T> {
    future: Pin<Box<T>>,
    timer: glommio::timer::Timer,
    _output: std::marker::PhantomData<fn() -> R>,
}

impl<R, T: Future<Output = R>> Future for Timeout<R, T> {
    type Output = Result<R, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        Pin::new(&mut self.timer).poll(cx).map(|_| Err(Elapsed))
    }
}

/// A monotonic instant (std's, in a type openraft's trait can be implemented for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonoInstant(std::time::Instant);

impl Add<Duration> for MonoInstant {
    type Output = MonoInstant;
    fn add(self, d: Duration) -> MonoInstant {
        MonoInstant(self.0 + d)
    }
}

impl AddAssign<Duration> for MonoInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for MonoInstant {
    type Output = MonoInstant;
    /// An instant before the clock's start stays at `self` (std's would panic);
    /// openraft only subtracts short spans from recent instants.
    fn sub(self, d: Duration) -> MonoInstant {
        MonoInstant(self.0.checked_sub(d).unwrap_or(self.0))
    }
}

impl SubAssign<Duration> for MonoInstant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<MonoInstant> for MonoInstant {
    type Output = Duration;
    fn sub(self, other: MonoInstant) -> Duration {
        self.0.saturating_duration_since(other.0)
    }
}

impl openraft::Instant for MonoInstant {
    fn now() -> Self {
        MonoInstant(std::time::Instant::now())
    }
}

/// The sending half of a oneshot.
pub struct OneshotSender<T>(futures::channel::oneshot::Sender<T>);

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T> openraft::async_runtime::AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = MonoInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<R, T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = futures::channel::oneshot::Canceled;
    type OneshotReceiver<T: OptionalSend> = futures::channel::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        JoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Sleep {
        Sleep(glommio::timer::Timer::new(duration))
    }

    fn sleep_until(deadline: MonoInstant) -> Sleep {
        Self::sleep(deadline - <MonoInstant as openraft::Instant>::now())
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Timeout<R, F> {
        Timeout {
            future: Box::pin(future),
            timer: glommio::timer::Timer::new(duration),
            _output: std::marker::PhantomData,
        }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: MonoInstant,
        future: F,
    ) -> Timeout<R, F> {
        Self::timeout(deadline - <MonoInstant as openraft::Instant>::now(), future)
    }

    fn is_panic(_: &JoinError) -> bool {
        false
    }

    fn thread_rng() -> rand::rngs::ThreadRng {
        rand::thread_rng()
    }

    fn oneshot<T: OptionalSend>() -> (OneshotSender<T>, futures::channel::oneshot::Receiver<T>) {
        let (tx, rx) = futures::channel::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}
