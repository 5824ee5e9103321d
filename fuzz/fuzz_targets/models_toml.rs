//! models.toml: the catalog parser (strata-run's catalog), and the sizing `plan` does for every
//! model it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_run::catalog;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(c) = catalog::Catalog::parse(text) else { return };
    for name in c.models.keys() {
        let m = c.model(name).unwrap();
        if let Ok(shape) = strata_convert::arch::config_shape(m.config_json()) {
            let _ = shape.kv_cache_bytes(1 << 20, 512, 2.0);
        }
    }
    for name in c.devices.keys() {
        c.device(name).unwrap();
    }
    let _ = c.device("no such device");
});
