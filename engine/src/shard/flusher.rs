//! Group commit. One flusher task per shard owns every write-back and fdatasync that
//! is not driven by a full buffer. Each round takes the partitions written since the
//! last round and, all at once, syncs those that someone waits on (acks=all) or whose
//! `flush.messages`/`flush.ms` is due, and writes out buffered bytes that have waited
//! `writeback_interval`. Appends that arrive during a round are covered by the next
//! one, so one fdatasync per partition serves every waiter that arrived before it.

use std::rc::Rc;
use std::time::Instant;

use futures::future::select;

use crate::log::{FlushNeed, Partition};
use crate::shard::ShardCtx;

pub(crate) async fn run(ctx: Rc<ShardCtx>) {
    loop {
        let signal = ctx.flush_signal.notified();
        let parts: Vec<Rc<Partition>> = std::mem::take(&mut *ctx.dirty.borrow_mut());
        for p in &parts {
            p.in_dirty_list.set(false);
        }
        let now = Instant::now();
        let mut work = Vec::new();
        let mut keep = Vec::new();
        for p in parts {
            match p.flush_need(now) {
                FlushNeed::Sync => work.push(run_one(p.clone(), true)),
                FlushNeed::Write => work.push(run_one(p.clone(), false)),
                FlushNeed::Later => keep.push(p),
                FlushNeed::Nothing => {}
            }
        }
        let did_work = !work.is_empty();
        let done = futures::future::join_all(work).await;
        for p in keep.into_iter().chain(done.into_iter().flatten()) {
            if p.flush_need(Instant::now()) != FlushNeed::Nothing && !p.in_dirty_list.replace(true)
            {
                ctx.dirty.borrow_mut().push(p);
            }
        }
        if ctx.stopping.get() && ctx.dirty.borrow().is_empty() {
            return;
        }
        if did_work {
            continue;
        }
        if ctx.dirty.borrow().is_empty() {
            signal.await;
        } else {
            let tick = glommio::timer::sleep(ctx.config.writeback_interval);
            futures::pin_mut!(tick);
            let _ = select(signal, tick).await;
        }
    }
}

/// Syncs or writes one partition; returns it so the caller can see if it stays dirty.
async fn run_one(p: Rc<Partition>, sync: bool) -> Option<Rc<Partition>> {
    let r = if sync {
        p.sync().await
    } else {
        p.write_out(true).await
    };
    match r {
        Ok(()) => Some(p),
        Err(e) => {
            if p.offline_reason().is_none() {
                p.fail(&e);
            }
            None
        }
    }
}
