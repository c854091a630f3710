//! What the record says about the machine: CPU model and vCPUs
//! (`/proc/cpuinfo`), kernel (`uname -r`), and the filesystem type of each
//! output directory (`/proc/self/mounts`, else `statfs` `f_type`).
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::path::Path;

use serde::Serialize;

/// The machine a run measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// `model name` of the first processor in `/proc/cpuinfo` (`?` if none).
    pub cpu_model: String,
    /// Logical CPUs (`processor` entries in `/proc/cpuinfo`).
    pub vcpus: usize,
    /// `uname -r` (the `release` of `uname(2)`).
    pub kernel: String,
}

impl Machine {
    /// Reads this machine's figures (`?` where one cannot be read).
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let (cpu_model, vcpus) = cpu_of_cpuinfo(&cpuinfo);
        Machine {
            cpu_model,
            vcpus,
            kernel: kernel_release().unwrap_or_else(|| "?".into()),
        }
    }
}

/// `model name` of the first processor and the number of processors.
fn cpu_of_cpuinfo(text: &str) -> (String, usize) {
    let field = |l: &str, key: &str| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    };
    let model = text
        .lines()
        .find_map(|l| field(l, "model name"))
        .unwrap_or_else(|| "?".into());
    let n = text
        .lines()
        .filter(|l| field(l, "processor").is_some())
        .count();
    (model, n)
}

/// The kernel release, as `uname -r` prints it.
fn kernel_release() -> Option<String> {
    // The same string as uname(2)'s `release`, without unsafe.
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The filesystem type holding `path` (`tmpfs`, `ext4`, ...): the mount in
/// `/proc/self/mounts` with the longest mount point that is a prefix of the
/// canonical path; failing that, the name of `statfs(2)`'s `f_type`; `?`
/// if neither is known.
pub fn fs_type(path: &Path) -> String {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| fs_type_of_mounts(&m, &canon))
        .or_else(|| statfs_magic(&canon).map(|m| fs_name_of_magic(m).to_owned()))
        .unwrap_or_else(|| "?".into())
}

/// The type of the mount holding `path` (absolute, canonical) in a
/// `/proc/self/mounts` text; the last of equal mount points wins (it is
/// mounted over the others).
fn fs_type_of_mounts(mounts: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(mnt), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // Spaces and tabs in mount points are written as octal escapes.
        let mnt = mnt.replace("\\040", " ").replace("\\011", "\t");
        if path.starts_with(&mnt) && best.is_none_or(|(len, _)| mnt.len() >= len) {
            best = Some((mnt.len(), fstype));
        }
    }
    best.map(|(_, t)| t.to_owned())
}

/// `statfs(2)`'s `f_type` of `path`.
fn statfs_magic(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a live local.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    #[allow(clippy::unnecessary_cast)] // f_type's type differs by target
    let magic = st.f_type as u64;
    (rc == 0).then_some(magic)
}

/// The name of a `statfs` `f_type` magic (linux/magic.h).
fn fs_name_of_magic(magic: u64) -> &'static str {
    match magic {
        0x0102_1994 => "tmpfs",
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlay",
        0xF2F5_2010 => "f2fs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0x8584_58F6 => "ramfs",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
proc /proc proc rw 0 0
tmpfs /tmp/my\\040dir tmpfs rw 0 0
/dev/vdb /tmp/my\\040dir xfs rw 0 0
";

    #[test]
    fn longest_mount_point_wins() {
        let t = |p: &str| fs_type_of_mounts(MOUNTS, Path::new(p));
        assert_eq!(t("/dev/shm/p2pe").as_deref(), Some("tmpfs"));
        assert_eq!(t("/tmp/p2pe-linerate").as_deref(), Some("ext4"));
        assert_eq!(t("/").as_deref(), Some("ext4"));
        // Escaped space; the later mount over the same point wins.
        assert_eq!(t("/tmp/my dir/x").as_deref(), Some("xfs"));
        // A prefix of the name is not a parent: /dev/shmx is on /.
        assert_eq!(t("/dev/shmx").as_deref(), Some("ext4"));
        assert_eq!(fs_type_of_mounts("", Path::new("/x")), None);
    }

    #[test]
    fn magic_numbers_name_filesystems() {
        assert_eq!(fs_name_of_magic(0x0102_1994), "tmpfs");
        assert_eq!(fs_name_of_magic(0xEF53), "ext2/3/4");
        assert_eq!(fs_name_of_magic(1), "?");
    }

    #[test]
    fn this_machine_has_a_cpu_a_kernel_and_a_filesystem() {
        let m = Machine::detect();
        assert!(m.vcpus >= 1, "{m:?}");
        assert_ne!(m.kernel, "?");
        let dir = tempfile::tempdir().unwrap();
        assert_ne!(fs_type(dir.path()), "?");
        assert!(statfs_magic(dir.path()).is_some());
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(fs_type(Path::new("/dev/shm")), "tmpfs");
        }
    }

    #[test]
    fn cpuinfo_model_and_count() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: sse\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_of_cpuinfo(text), ("AMD EPYC 7B13".into(), 2));
        assert_eq!(cpu_of_cpuinfo(""), ("?".into(), 0));
    }
}
