//! Integration tests: the real `sandbox` binary against real servers and tools on 127.0.0.1.
//! One test binary (faster to link, shares the harness); each module is one concern.

mod harness;
mod harness_selftest;
