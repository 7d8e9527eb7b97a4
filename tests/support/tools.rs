//! The real tools the tests run (promtool, amtool, prometheus, chromium, python3): found on
//! PATH, or a failure naming the Debian package, so a test never passes by skipping.
//! Shared by `support` and by `tests/monitoring` (included there with `#[path]`).

use std::path::PathBuf;

/// The path of an executable on PATH; panics naming the Debian package when it is missing.
/// scripts/test-all.sh installs the packages (its APT_PACKAGES line).
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not on PATH: install the Debian package `{package}` \
         (apt-get install {package}; scripts/test-all.sh does this)"
    )
}
