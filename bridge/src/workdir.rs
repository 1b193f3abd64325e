//! The owner's private working directory: worker sockets, the fork server's control socket, and
//! the 0600 files that hand settings and secrets to workers. Directories of owners that died
//! before they could remove theirs are cleaned up when a new one is made.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Socket directories are named `dspex-<owner pid>-<random>`.
const SOCKET_DIR_PREFIX: &str = "dspex-";

/// Removes the socket directories of processes that are gone (a program killed before it could
/// clean up after itself leaves its directory behind).
pub(crate) fn remove_stale_socket_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SOCKET_DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let owned_by_us = entry
            .metadata()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == current_uid())
            .unwrap_or(false);
        if owned_by_us && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// Makes a new private (0700) directory for this process's workers, after removing stale ones.
pub(crate) fn create() -> std::io::Result<tempfile::TempDir> {
    // Short, private, and ours: Unix socket paths are limited to about 100 bytes.
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    remove_stale_socket_dirs(&base);
    tempfile::Builder::new()
        .prefix(&format!("{SOCKET_DIR_PREFIX}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
}

/// Writes `contents` to `path` with mode 0600 (created or truncated).
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}
