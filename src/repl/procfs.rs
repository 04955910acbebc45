//! The few facts about processes the sandbox reads from /proc: each process's real user
//! id and resident memory. Read from /proc/<pid>/status, which a
//! process cannot hide from (unlike the owner of /proc/<pid>, which turns to root when a
//! process makes itself non-dumpable).

pub struct ProcessInfo {
    pub uid: u32,
    pub resident_bytes: u64,
}

/// Every process visible now (those that exit while being read are skipped).
pub fn processes() -> impl Iterator<Item = ProcessInfo> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter_map(|status| parse_status(&status))
}

fn parse_status(status: &str) -> Option<ProcessInfo> {
    let mut uid = None;
    let mut resident_kib = 0u64;
    for line in status.lines() {
        if let Some(ids) = line.strip_prefix("Uid:") {
            uid = ids.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(rss) = line.strip_prefix("VmRSS:") {
            resident_kib = rss
                .split_whitespace()
                .next()
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
        }
    }
    Some(ProcessInfo {
        uid: uid?,
        resident_bytes: resident_kib * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_file_gives_user_and_memory() {
        let status = "Name:\tpython\nState:\tZ (zombie)\nUid:\t61000\t61000\t61000\t61000\nVmRSS:\t  2048 kB\n";
        let info = parse_status(status).unwrap();
        assert_eq!((info.uid, info.resident_bytes), (61000, 2048 * 1024));
    }

    #[test]
    fn this_process_is_listed() {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        assert!(processes().any(|p| p.uid == uid && p.resident_bytes > 0));
    }
}
