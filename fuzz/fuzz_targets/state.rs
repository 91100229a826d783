//! Any bytes on stdin: parsing must return a value or an error, never panic, and a
//! parsed state must carry a valid id and a stage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nethook::model::ids::ContainerId;
use nethook::frontend::oci::{parse_state, Stage};

fuzz_target!(|data: &[u8]| {
    for forced in [None, Some(Stage::Setup), Some(Stage::Teardown)] {
        if let Ok(input) = parse_state(data, forced) {
            assert!(ContainerId::parse(input.id.as_str()).is_ok());
            if let Some(stage) = forced {
                assert_eq!(input.stage, stage);
            }
            // The options of a parsed state must not panic either.
            if let Some(annotations) = &input.annotations {
                let _ = nethook::core::request::Options::from_annotations(annotations);
            }
        }
    }
});
