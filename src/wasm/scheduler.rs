//! The timer that drives every open store of this JS realm: one `setTimeout`, re-armed after
//! each tick from the engines' own next-tick decisions ([`Engine::next_tick_ms`]).
//!
//! A tick sweeps expired keys and starts the flushes that are due; the policy (when, how much)
//! is the engine's, this file only owns the timer. In Node.js the timer is `unref()`ed, so an
//! idle store never keeps a process alive, and pending data is flushed at `beforeExit`. In
//! browsers a flush starts when the page becomes hidden and on `pagehide`.
//!
//! Stores with a persistent backend are held strongly until `close()` (so buffered data is
//! never dropped with a forgotten handle); memory stores weakly.
//!
//! [`Engine::next_tick_ms`]: crate::core::Engine::next_tick_ms

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;

use super::store::Shared;

#[wasm_bindgen(inline_js = r#"
export function isNode() {
  return typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
}
export function arm(ms, callback) {
  const t = setTimeout(callback, ms);
  if (t && typeof t.unref === 'function') t.unref();
  return t;
}
export function disarm(t) { clearTimeout(t); }
export function installHooks(flushAll) {
  if (isNode() && typeof process.on === 'function') {
    process.on('beforeExit', () => flushAll(true));
    return;
  }
  const g = globalThis;
  if (g.document && typeof g.document.addEventListener === 'function') {
    g.document.addEventListener('visibilitychange', () => {
      if (g.document.visibilityState === 'hidden') flushAll(false);
    });
  }
  if (typeof g.addEventListener === 'function') g.addEventListener('pagehide', () => flushAll(false));
}
export function settled(p) { return p.then(() => undefined, () => undefined); }
"#)]
extern "C" {
    #[wasm_bindgen(js_name = isNode)]
    fn is_node_js() -> bool;
    fn arm(ms: f64, callback: &Closure<dyn FnMut()>) -> JsValue;
    fn disarm(timer: &JsValue);
    #[wasm_bindgen(js_name = installHooks)]
    fn install_hooks(flush_all: &Closure<dyn FnMut(bool)>);
    /// A promise that fulfils once `p` settles, whatever the outcome.
    pub(crate) fn settled(p: &js_sys::Promise) -> js_sys::Promise;
}

/// Whether this realm is Node.js.
pub(crate) fn is_node() -> bool {
    is_node_js()
}

/// The current time, ms since the Unix epoch.
pub(crate) fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// How many `beforeExit` rounds may still find unflushed data before we let the process go
/// (a backend that keeps failing must not keep Node alive forever).
const EXIT_ATTEMPTS: u32 = 3;

enum Held {
    Strong(Rc<Shared>),
    Weak(Weak<Shared>),
}

impl Held {
    fn get(&self) -> Option<Rc<Shared>> {
        match self {
            Held::Strong(s) => Some(Rc::clone(s)),
            Held::Weak(w) => w.upgrade(),
        }
    }
}

#[derive(Default)]
struct Scheduler {
    stores: Vec<Held>,
    /// The armed timer and when it fires (ms since epoch).
    timer: Option<(JsValue, u64)>,
    on_timer: Option<Closure<dyn FnMut()>>,
    on_hook: Option<Closure<dyn FnMut(bool)>>,
    exit_rounds: u32,
}

thread_local! {
    static SCHEDULER: RefCell<Scheduler> = RefCell::new(Scheduler::default());
}

/// Starts ticking `store` (strongly held if `strong`) until [`unregister`].
pub(crate) fn register(store: &Rc<Shared>, strong: bool) {
    SCHEDULER.with(|s| {
        let mut s = s.borrow_mut();
        if s.on_hook.is_none() {
            let hook = Closure::<dyn FnMut(bool)>::new(flush_all);
            install_hooks(&hook);
            s.on_hook = Some(hook);
        }
        s.stores.push(if strong {
            Held::Strong(Rc::clone(store))
        } else {
            Held::Weak(Rc::downgrade(store))
        });
    });
    wake(now(), 0);
}

/// Stops ticking `store`.
pub(crate) fn unregister(store: &Rc<Shared>) {
    SCHEDULER.with(|s| {
        let mut s = s.borrow_mut();
        s.stores
            .retain(|h| h.get().is_some_and(|other| !Rc::ptr_eq(&other, store)));
        if s.stores.is_empty() {
            if let Some((timer, _)) = s.timer.take() {
                disarm(&timer);
            }
        }
    });
}

/// Makes sure a tick comes within `delay_ms` of `now` (re-arming only if that is sooner than
/// planned). Callers pass the `now` they already read: this runs on every store call.
pub(crate) fn wake(now: u64, delay_ms: u64) {
    SCHEDULER.with(|s| {
        let mut s = s.borrow_mut();
        if s.stores.is_empty() {
            return;
        }
        let due = now.saturating_add(delay_ms);
        if s.timer.as_ref().is_some_and(|(_, at)| *at <= due) {
            return;
        }
        if let Some((timer, _)) = s.timer.take() {
            disarm(&timer);
        }
        let on_timer = s
            .on_timer
            .get_or_insert_with(|| Closure::<dyn FnMut()>::new(tick));
        let timer = arm(delay_ms as f64, on_timer);
        s.timer = Some((timer, due));
    });
}

/// The stores to work on, dropping the ones that are gone.
fn live_stores() -> Vec<Rc<Shared>> {
    SCHEDULER.with(|s| {
        let mut s = s.borrow_mut();
        s.stores.retain(|h| h.get().is_some());
        s.stores.iter().filter_map(Held::get).collect()
    })
}

fn tick() {
    SCHEDULER.with(|s| s.borrow_mut().timer = None);
    let now = now();
    // The scheduler is not borrowed while stores run: a store may call back into it.
    let delay = live_stores()
        .iter()
        .filter_map(|store| store.tick(now))
        .min();
    if let Some(delay) = delay {
        wake(now, delay);
    }
}

/// Starts a flush of every store holding unflushed data (page hidden, `beforeExit`).
fn flush_all(at_exit: bool) {
    let stores: Vec<Rc<Shared>> = live_stores()
        .into_iter()
        .filter(|s| s.has_unflushed())
        .collect();
    if at_exit {
        let give_up = SCHEDULER.with(|s| {
            let mut s = s.borrow_mut();
            if stores.is_empty() {
                s.exit_rounds = 0;
                return true;
            }
            s.exit_rounds += 1;
            s.exit_rounds > EXIT_ATTEMPTS
        });
        if give_up {
            return;
        }
    }
    for store in stores {
        store.kick();
    }
}
