//! The seccomp filter of a confined process: built before the fork,
//! installed in the child with system calls only.

use super::SandboxError;

/// The system calls a confined process is refused (`EPERM`), as a compiled
/// seccomp filter: UNIX and socket-diagnostics sockets, owners, extended
/// attributes, and the set-user-ID and set-group-ID bits.
pub fn seccomp_filter() -> Result<seccompiler::BpfProgram, SandboxError> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
        SeccompFilter, SeccompRule, TargetArch,
    };
    let bad = |e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string());
    let when = |conditions: Vec<Cond>| SeccompRule::new(conditions).map_err(bad);
    let arg = |index: u8, op: Op, value: u64| Cond::new(index, Len::Dword, op, value).map_err(bad);
    let set_id_bits = |index: u8| -> Result<Vec<SeccompRule>, SandboxError> {
        Ok(vec![
            when(vec![arg(index, Op::MaskedEq(0o4000), 0o4000)?])?,
            when(vec![arg(index, Op::MaskedEq(0o2000), 0o2000)?])?,
        ])
    };
    const NETLINK_SOCK_DIAG: u64 = 4;
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> = [
        libc::SYS_chown,
        libc::SYS_fchown,
        libc::SYS_lchown,
        libc::SYS_fchownat,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_fremovexattr,
        // setxattrat and removexattrat (Linux 6.13).
        463,
        466,
    ]
    .into_iter()
    .map(|call| (call, Vec::new()))
    .collect();
    rules.insert(
        libc::SYS_socket,
        vec![
            when(vec![arg(0, Op::Eq, libc::AF_UNIX as u64)?])?,
            when(vec![
                arg(0, Op::Eq, libc::AF_NETLINK as u64)?,
                arg(2, Op::Eq, NETLINK_SOCK_DIAG)?,
            ])?,
        ],
    );
    rules.insert(libc::SYS_chmod, set_id_bits(1)?);
    rules.insert(libc::SYS_fchmod, set_id_bits(1)?);
    rules.insert(libc::SYS_fchmodat, set_id_bits(2)?);
    // fchmodat2 (Linux 6.6).
    rules.insert(452, set_id_bits(2)?);
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(bad)?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))
}

/// Installs a compiled seccomp filter on this thread (no new privileges
/// already set). System calls only.
pub(super) fn install_seccomp(program: &seccompiler::BpfProgram) -> std::io::Result<()> {
    let length = u16::try_from(program.len())
        .map_err(|_| std::io::Error::other("the seccomp filter is too long"))?;
    let prog = libc::sock_fprog {
        len: length,
        filter: program.as_ptr().cast_mut().cast(),
    };
    // SAFETY: the filter program outlives the call, which copies it.
    let done = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seccomp_filter_compiles_for_this_machine() {
        assert!(!seccomp_filter().unwrap().is_empty());
    }
}
