//! What a manager's data dir holds, by name, and this host's name: shared by the manager that
//! writes the files, the admin CLI that finds its key and CA there, and the bench that prepares
//! one. (Neutral ground, so none of them imports another for a file name.)

/// The store, `DIR/picket.redb` (`schema/store.md`).
pub const STORE_FILE: &str = "picket.redb";
/// The CA, the manager's certificate and the ticket key, under `DIR/pki/`.
pub const PKI_DIR: &str = "pki";
/// The admin API key, written once at the first start.
pub const ADMIN_KEY_FILE: &str = "admin-api-key";
/// Where the running manager's listeners are, written once they listen.
pub const PORTS_FILE: &str = "ports.json";

/// The name the manager gives itself (and an agent reports) without `--hostname`: the kernel's
/// host name, else `localhost`.
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
