//! The load generator's open-file budget: raise `RLIMIT_NOFILE` before a run.
//!
//! Invariant: after [`raise_nofile`] returns `Ok(n)`, the soft limit is `n` and
//! `n` is at least the number of descriptors asked for. The hard limit is never
//! touched: raising it needs privileges and is the operator's decision.

/// What the soft and hard `RLIMIT_NOFILE` were when a run needed more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileShortfall {
    /// Descriptors the run needs (connections plus a fixed reserve).
    pub needed: u64,
    /// The soft limit after trying to raise it.
    pub soft: u64,
    /// The hard limit, which only a privileged process can raise.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and checks that `needed`
/// descriptors fit. Returns the new soft limit.
///
/// # Errors
///
/// `Err(shortfall)` when `needed` exceeds the hard limit, or when the limits
/// cannot be read or set (then `soft` and `hard` are what could be read, or 0).
pub fn raise_nofile(needed: u64) -> Result<u64, NofileShortfall> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`; getrlimit only writes into it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return Err(NofileShortfall {
            needed,
            soft: 0,
            hard: 0,
        });
    }
    let hard = lim.rlim_max;
    if lim.rlim_cur < hard {
        let raised = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: `raised` is a valid `rlimit` with soft == hard, which an
        // unprivileged process may always set.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc == 0 {
            lim.rlim_cur = hard;
        }
    }
    // rlim_t is u64 on Linux; RLIM_INFINITY is u64::MAX, which compares as "enough".
    let soft = lim.rlim_cur;
    if needed > soft {
        return Err(NofileShortfall { needed, soft, hard });
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_need_fits() {
        assert!(raise_nofile(16).is_ok());
    }

    #[test]
    fn need_above_hard_limit_names_both_limits() {
        let err = raise_nofile(u64::MAX - 1).unwrap_err();
        assert_eq!(err.needed, u64::MAX - 1);
        assert!(err.soft <= err.hard);
    }
}
