//! cargo-fuzz binary for the `session` target; its body is `tessera_fuzz::targets::session`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_fuzz::targets::session::{Scenario, check};

fuzz_target!(|scenario: Scenario| check(scenario));
