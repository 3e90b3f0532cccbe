//! The kernel's timer queue: a binary min-heap of armed timer slots keyed by
//! (deadline, arming sequence), with each slot's position kept so that a
//! stop removes it in place. Keys are unique (the sequence grows), so the
//! order in which timers fire does not depend on the heap's layout.

/// A min-heap of `(key, slot)` with removal by slot.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: Vec<((u64, u64), u32)>,
    /// Per slot: its index in `heap`, or `NONE`.
    pos: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl TimerHeap {
    pub fn push(&mut self, slot: u32, key: (u64, u64)) {
        let s = slot as usize;
        if self.pos.len() == s {
            // Slots are handed out in order: usually the next one.
            self.pos.push(NONE);
        } else if self.pos.len() < s {
            self.pos.resize(s + 1, NONE);
        }
        debug_assert_eq!(self.pos[s], NONE, "slot {slot} is armed twice");
        self.heap.push((key, slot));
        let i = self.heap.len() - 1;
        self.pos[s] = i as u32;
        self.up(i);
    }

    /// The earliest entry.
    #[inline]
    pub fn peek(&self) -> Option<(u32, (u64, u64))> {
        self.heap.first().map(|&(key, slot)| (slot, key))
    }

    pub fn pop(&mut self) -> Option<(u32, (u64, u64))> {
        let first = self.peek()?;
        self.take(0);
        Some(first)
    }

    /// Removes `slot` if it is armed, returning its key.
    pub fn remove(&mut self, slot: u32) -> Option<(u64, u64)> {
        let i = *self.pos.get(slot as usize)?;
        if i == NONE {
            return None;
        }
        let key = self.heap[i as usize].0;
        self.take(i as usize);
        Some(key)
    }

    /// Every armed entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, (u64, u64))> + '_ {
        self.heap.iter().map(|&(key, slot)| (slot, key))
    }

    pub fn clear(&mut self) {
        self.heap.clear();
        self.pos.clear();
    }

    fn take(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.heap.swap(i, last);
        let (_, gone) = self.heap.pop().expect("not empty");
        self.pos[gone as usize] = NONE;
        if i < last {
            self.pos[self.heap[i].1 as usize] = i as u32;
            let i = self.up(i);
            self.down(i);
        }
    }

    fn up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].0 <= self.heap[i].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    fn down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < n && self.heap[l].0 < self.heap[least].0 {
                least = l;
            }
            if r < n && self.heap[r].0 < self.heap[least].0 {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng;
    use std::collections::BTreeMap;

    #[test]
    fn pops_in_key_order_and_removes_by_slot_like_an_ordered_map() {
        let mut heap = TimerHeap::default();
        let mut model: BTreeMap<(u64, u64), u32> = BTreeMap::new();
        let mut armed: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let mut r = rng::rng(5, 0);
        let (mut seq, mut next_slot) = (0, 0u32);
        for _ in 0..50_000 {
            match rng::below(&mut r, 3) {
                0 => {
                    seq += 1;
                    let key = (rng::below(&mut r, 40) as u64, seq);
                    heap.push(next_slot, key);
                    model.insert(key, next_slot);
                    armed.insert(next_slot, key);
                    next_slot += 1;
                }
                1 => {
                    let got = heap.pop();
                    let want = model.pop_first().map(|(k, s)| (s, k));
                    assert_eq!(got, want);
                    if let Some((s, _)) = got {
                        armed.remove(&s);
                    }
                }
                _ => {
                    let slot = rng::below(&mut r, next_slot as usize + 1) as u32;
                    let got = heap.remove(slot);
                    let want = armed.remove(&slot);
                    if let Some(k) = want {
                        model.remove(&k);
                    }
                    assert_eq!(got, want);
                }
            }
            assert_eq!(heap.peek(), model.first_key_value().map(|(k, s)| (*s, *k)));
        }
    }
}
