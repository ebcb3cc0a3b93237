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
/// `Err(shortfall)` when `needed` exceeds the soft limit, after raising it
/// to the hard one where that was allowed.
pub fn raise_nofile(needed: u64) -> Result<u64, NofileShortfall> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    // `None` is RLIM_INFINITY, which compares as "enough".
    let unlimited = |v: Option<u64>| v.unwrap_or(u64::MAX);
    let lim = getrlimit(Resource::Nofile);
    let hard = unlimited(lim.maximum);
    let mut soft = unlimited(lim.current);
    if soft < hard {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        // Soft == hard is a limit an unprivileged process may always set.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            soft = hard;
        }
    }
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
