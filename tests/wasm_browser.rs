//! Browser smoke test: the wasm build loads in headless Chromium and the JS API works there.
#![cfg(target_arch = "wasm32")]

use tidekv::wasm::JsStore;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn store_works_in_a_browser_page() {
    let in_page = js_sys::Reflect::has(&js_sys::global(), &JsValue::from_str("document"));
    assert_eq!(in_page, Ok(true), "running in a browser page");
    let s = JsStore::memory(JsValue::UNDEFINED).unwrap();
    s.set(
        "greeting".into(),
        "hello from the browser".into(),
        JsValue::UNDEFINED,
    )
    .unwrap();
    assert_eq!(
        s.get("greeting".into()).unwrap().as_string().as_deref(),
        Some("hello from the browser")
    );
    assert!(s.delete("greeting".into()).unwrap());
    assert!(s.get("greeting".into()).unwrap().is_undefined());
}
