//! The annotation grammar: any value for any nethook key must parse or be refused,
//! never panic; accepted ports must round-trip through their display form.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use nethook::core::request::Options;
use nethook::frontend::annotations::{DISABLE, IFNAME, IP, MAC, NETWORK, PORTS};
use nethook::model::ports::parse_ports;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(specs) = parse_ports(text) {
        for spec in &specs {
            assert!(spec.count >= 1);
            assert!(u32::from(spec.host_port) + u32::from(spec.count) - 1 <= 65535);
            assert!(u32::from(spec.container_port) + u32::from(spec.count) - 1 <= 65535);
            assert_eq!(spec.pairs().count(), usize::from(spec.count));
        }
    }
    for key in [NETWORK, PORTS, IP, MAC, IFNAME, DISABLE] {
        let map: HashMap<String, String> = [(key.to_owned(), text.to_owned())].into();
        if let Ok(opts) = Options::from_annotations(&map) {
            assert!(!opts.ifname.is_empty() && opts.ifname.len() <= 15);
        }
    }
});
