//! The operating-system side of the run's own servers: free ports, signals, the process tree
//! under a server (read from /proc), and whether a port refuses connections.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};

/// A port nobody listens on right now: bound on 127.0.0.1 with port 0, read back and closed. The
/// server then binds it; a collision in between shows as a server that fails to start, which
/// the caller retries with fresh ports.
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Several distinct free ports (each bound until all are chosen, so none repeats).
pub(super) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("failed to find a free port"))
        .collect::<anyhow::Result<_>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// Whether a connection to 127.0.0.1:`port` is refused (nothing listens). A connection that is
/// accepted, or one that hangs, is not refused.
pub(super) async fn port_refuses(port: u16) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Err(error)) => error.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(super) fn signal(pid: u32, signal: libc::c_int) -> anyhow::Result<()> {
    // SAFETY: kill(2) with a plain pid and signal number has no memory-safety preconditions.
    let outcome = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if outcome == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(error).with_context(|| format!("failed to send signal {signal} to process {pid}"))
}

/// Whether `pid` is alive: it exists and is not a zombie (a zombie holds no port and no file).
pub(super) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The state letter and the parent pid of a `/proc/<pid>/stat` line. The command name (second
/// field) may hold spaces and parentheses, so the fields are read after its last `)`.
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Every living descendant of `pid` (children, their children, ...), from /proc. PostgreSQL's
/// children start sessions of their own, so a process group would not find them.
pub(super) fn descendants(pid: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(Result::ok) {
            let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            if let Some((state, parent)) = stat_fields(&stat)
                && state != 'Z'
                && state != 'X'
            {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![pid];
    while let Some(parent) = pending.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            pending.push(child);
        }
    }
    found
}

/// The path of the program `pid` runs (`/proc/<pid>/exe`), if it can be read.
pub(super) fn executable(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Waits until every one of `pids` is gone, reaping `child` (our own child process) on the way.
pub(super) async fn wait_until_gone(child: &mut std::process::Child, pids: &[u32], patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let child_gone = child.try_wait().context("failed to wait for a server process")?.is_some();
        let living: Vec<u32> = pids.iter().copied().filter(|&pid| pid != child.id() && alive(pid)).collect();
        if child_gone && living.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "still alive after {patience:?}: {}{}",
                if child_gone { String::new() } else { format!("process {} ", child.id()) },
                living.iter().map(|pid| format!("process {pid}")).collect::<Vec<_>>().join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every one of `ports` refuses connections.
pub(super) async fn wait_until_ports_refuse(ports: &[u16], patience: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let mut open = Vec::new();
        for &port in ports {
            if !port_refuses(port).await {
                open.push(port);
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("port(s) {open:?} still do not refuse connections after {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The uid and gid of the user `name`, from the password database.
pub(super) fn user_ids(name: &str) -> anyhow::Result<(u32, u32)> {
    let c_name = std::ffi::CString::new(name)?;
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is the one given, and the
    // entry is read only when the call says it filled it in.
    let status = unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut result) };
    if status != 0 || result.is_null() {
        bail!("there is no user {name:?} on this machine");
    }
    Ok((entry.pw_uid, entry.pw_gid))
}

/// Whether this process runs as root.
pub(super) fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The last lines of a server's log, for an error message.
pub(super) fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
    format!("last lines of {}:\n    {tail}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_read_after_the_last_parenthesis_of_the_command_name() {
        assert_eq!(stat_fields("42 (a (weird) name) S 7 42 42 0"), Some(('S', 7)));
        assert_eq!(stat_fields("43 (postgres: checkpointer ) Z 1 1 1"), Some(('Z', 1)));
    }

    #[test]
    fn this_process_is_alive_and_a_child_of_its_parent() {
        let me = std::process::id();
        assert!(alive(me));
        // SAFETY: getppid(2) cannot fail.
        let parent = unsafe { libc::getppid() } as u32;
        assert!(descendants(parent).contains(&me));
    }
}
