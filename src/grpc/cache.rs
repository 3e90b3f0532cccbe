//! Port of grpc-go `internal/cache/timeoutCache.go` at `e0ac3acff`.
//!
//! A cache whose entries expire after a timeout; an expired entry's callback
//! runs on the timer's own task. `remove` that races with the timer (the
//! timer already launched its task, so `Timer.Stop` returns false) marks the
//! entry deleted, and the timer task then does nothing.

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::rc::Rc;

use crate::sim::{self, GoMap, Mutex, Timer};

use super::balancer::BoxFut;
use crate::sim::Name;

/// What runs when an entry expires or is cleared with `run_callback`.
pub type Callback = Box<dyn FnOnce() -> BoxFut<'static, ()>>;

struct CacheEntry<V> {
    item: V,
    callback: RefCell<Option<Callback>>,
    timer: RefCell<Option<Timer>>,
    deleted: Cell<bool>,
}

impl<V> CacheEntry<V> {
    async fn run_callback(&self) {
        let cb = self.callback.borrow_mut().take();
        if let Some(cb) = cb {
            cb().await;
        }
    }
}

pub struct TimeoutCache<K, V> {
    mu: Mutex,
    timeout: u64,
    cache: RefCell<GoMap<K, Rc<CacheEntry<V>>>>,
}

impl<K, V> TimeoutCache<K, V>
where
    K: Ord + Clone + Display + 'static,
    V: Clone + 'static,
{
    pub fn new(timeout: u64) -> Rc<Self> {
        Rc::new(TimeoutCache {
            mu: Mutex::new("timeoutCache.mu"),
            timeout,
            cache: RefCell::new(GoMap::new()),
        })
    }

    /// Adds `item` under `key` with an expiry callback. If `key` is already
    /// present, returns the existing item and false.
    pub async fn add(self: &Rc<Self>, key: K, item: V, callback: Callback) -> (V, bool) {
        let guard = self.mu.lock().await;
        let existing = self.cache.borrow().get(&key).map(|e| e.item.clone());
        if let Some(existing) = existing {
            guard.unlock().await;
            return (existing, false);
        }
        let entry = Rc::new(CacheEntry {
            item: item.clone(),
            callback: RefCell::new(Some(callback)),
            timer: RefCell::new(None),
            deleted: Cell::new(false),
        });
        // The callback holds the cache, as Go's closure does: it runs, and
        // closes the entry, even if everything else has let the cache go.
        let c = self.clone();
        let (timer_entry, timer_key) = (entry.clone(), key.clone());
        let timer = sim::after_func(
            self.timeout,
            {
                let key = key.clone();
                Name::lazy(move || format!("timeoutCache.timer[{key}]"))
            },
            async move {
                let guard = c.mu.lock().await;
                if timer_entry.deleted.get() {
                    guard.unlock().await;
                    return;
                }
                c.cache.borrow_mut().remove(&timer_key);
                guard.unlock().await;
                timer_entry.run_callback().await;
            },
        )
        .await;
        *entry.timer.borrow_mut() = Some(timer);
        sim::note(|| format!("timeoutCache: added {key}"));
        self.cache.borrow_mut().insert(key, entry);
        guard.unlock().await;
        (item, true)
    }

    /// Removes `key` without running its callback.
    pub async fn remove(&self, key: &K) -> Option<V> {
        let guard = self.mu.lock().await;
        let entry = self.remove_internal(key).await;
        guard.unlock().await;
        entry.map(|e| e.item.clone())
    }

    /// Must be called with `mu` held.
    async fn remove_internal(&self, key: &K) -> Option<Rc<CacheEntry<V>>> {
        let entry = self.cache.borrow_mut().remove(key)?;
        let timer = entry.timer.borrow_mut().take();
        if let Some(timer) = timer
            && !timer.stop().await
        {
            entry.deleted.set(true);
        }
        Some(entry)
    }

    /// Removes every entry; with `run_callback`, runs their callbacks
    /// synchronously after the lock is released.
    pub async fn clear(&self, run_callback: bool) {
        let guard = self.mu.lock().await;
        let keys = self.cache.borrow().keys_go_order();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(e) = self.remove_internal(&key).await {
                entries.push(e);
            }
        }
        sim::note(|| format!("timeoutCache: cleared {} entries", entries.len()));
        guard.unlock().await;
        if !run_callback {
            return;
        }
        for e in entries {
            e.run_callback().await;
        }
    }

    /// Number of entries (Go's `Len` takes the lock; here it is a plain read,
    /// used only by assertions).
    pub fn len(&self) -> usize {
        self.cache.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
