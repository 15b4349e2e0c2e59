//! Rendered pieces of pages (a dashboard's cards, the staff list's rows), kept while what they
//! show does not change.
//!
//! A piece is rendered from its values alone (`templates/slice_card.html`,
//! `templates/staff/slice_row.html`), so the values, serialized, are an exact key for the
//! HTML: the same bytes give the same piece. A student reloads the dashboard after every
//! action (each form redirects to it) and only the slice the action touched changes; staff
//! page through lists whose rows mostly stay as they were. Keys are compared whole (no hash
//! that could collide), and the cache is bounded by bytes: two generations, the older dropped
//! whole when the newer is full (an entry used meanwhile is carried into the newer), so the
//! least recently used go first without a list to keep in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a piece is of: its kind (the template it is rendered with) and the slice's id.
pub type Of = (&'static str, i64);

/// One piece: the serialized values it was rendered from, and the HTML.
struct Entry {
    key: Box<[u8]>,
    html: Arc<str>,
}

impl Entry {
    /// What it holds, with a rough allowance for the maps' own bookkeeping.
    fn bytes(&self) -> usize {
        self.key.len() + self.html.len() + 64
    }
}

#[derive(Default)]
struct Generations {
    young: HashMap<Of, Entry>,
    old: HashMap<Of, Entry>,
    young_bytes: usize,
}

/// Pieces by what they are of, at most about `limit` bytes in all.
pub struct Pieces {
    inner: Mutex<Generations>,
    /// Bytes one generation may hold (the cache holds at most two).
    half: usize,
}

impl Pieces {
    pub fn new(limit: usize) -> Pieces {
        Pieces {
            inner: Mutex::default(),
            half: limit / 2,
        }
    }

    /// The piece for `slice` rendered from exactly `key`, if it is kept.
    fn get(&self, slice: Of, key: &[u8]) -> Option<Arc<str>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = g.young.get(&slice) {
            return (*e.key == *key).then(|| e.html.clone());
        }
        let e = g.old.remove(&slice)?;
        if *e.key != *key {
            return None;
        }
        let html = e.html.clone();
        g.insert(slice, e, self.half);
        Some(html)
    }

    /// Keeps the piece for `slice` rendered from `key` (replacing its older one).
    fn put(&self, slice: Of, key: Vec<u8>, html: Arc<str>) {
        let e = Entry {
            key: key.into_boxed_slice(),
            html,
        };
        if e.bytes() > self.half {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.old.remove(&slice);
        g.insert(slice, e, self.half);
    }

    /// The piece rendered by `template` from `values` (flat at the top of its context), or
    /// the one kept from a render of exactly the same values.
    pub fn render(
        &self,
        tera: &tera::Tera,
        template: &'static str,
        id: i64,
        values: &impl serde::Serialize,
    ) -> Result<Arc<str>, tera::Error> {
        let key = serde_json::to_vec(values).map_err(|e| tera::Error::msg(e.to_string()))?;
        if let Some(html) = self.get((template, id), &key) {
            return Ok(html);
        }
        let html: Arc<str> = tera
            .render(template, &tera::Context::from_serialize(values)?)?
            .into();
        self.put((template, id), key, html.clone());
        Ok(html)
    }

    /// Bytes held now, and the number of pieces.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let old: usize = g.old.values().map(Entry::bytes).sum();
        (g.young_bytes + old, g.young.len() + g.old.len())
    }
}

impl Generations {
    fn insert(&mut self, slice: Of, e: Entry, half: usize) {
        if let Some(before) = self.young.remove(&slice) {
            self.young_bytes -= before.bytes();
        }
        if self.young_bytes + e.bytes() > half {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        self.young_bytes += e.bytes();
        self.young.insert(slice, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_card_is_given_back_only_for_the_same_values() {
        let c = Pieces::new(1 << 20);
        let (card, row) = (("card", 1), ("row", 1));
        c.put(card, b"running".to_vec(), html("<p>running</p>"));
        assert_eq!(c.get(card, b"running").as_deref(), Some("<p>running</p>"));
        assert_eq!(c.get(card, b"stopped"), None);
        assert_eq!(c.get(("card", 2), b"running"), None);
        assert_eq!(
            c.get(row, b"running"),
            None,
            "another kind of piece of the same slice"
        );
        c.put(card, b"stopped".to_vec(), html("<p>stopped</p>"));
        assert_eq!(c.get(card, b"running"), None);
        assert_eq!(c.get(card, b"stopped").as_deref(), Some("<p>stopped</p>"));
        assert_eq!(c.held().1, 1);
    }

    #[test]
    fn bounded_by_bytes_and_the_least_used_go_first() {
        // Each entry is 100 + 100 + 64 bytes: a generation holds three.
        let c = Pieces::new(2 * 3 * 264 + 10);
        let key = |i: i64| format!("{i:0>100}").into_bytes();
        let card = |i: i64| html(&format!("{i:x>100}"));
        for i in 0..1000 {
            c.put(("card", i), key(i), card(i));
            // Card 0 is read after each new one: it is never the least recently used.
            assert!(
                c.get(("card", 0), &key(0)).is_some(),
                "card 0 lost after {i}"
            );
            assert!(c.held().0 <= 2 * 3 * 264 + 10);
        }
        assert!(c.get(("card", 1), &key(1)).is_none());
        assert!(c.get(("card", 999), &key(999)).is_some());
        assert!(c.held().1 <= 6);
    }
}
