//! Dropping root after the sockets are bound (`--user USER`): supplementary groups cleared,
//! then the user's primary group, then the user. Checked afterwards: regaining root must fail.

use std::ffi::CString;
use std::fmt;

/// Why the process could not switch to the user.
#[derive(Debug)]
pub enum UserError {
    /// No such user in the password database.
    NoSuchUser(String),
    /// A syscall failed (usually: not running as root).
    Failed {
        /// The user.
        user: String,
        /// Which step: `setgroups`, `setgid`, `setuid`, `getpwnam_r`.
        step: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// After `setuid`, root could be regained: refusing to go on.
    StillRoot(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserError::NoSuchUser(u) => write!(f, "--user {u}: no such user"),
            UserError::Failed { user, step, error } => {
                write!(f, "--user {user}: {step} failed: {error}")?;
                if error.raw_os_error() == Some(libc::EPERM) {
                    write!(f, " (switching users needs root)")?;
                }
                Ok(())
            }
            UserError::StillRoot(u) => write!(f, "--user {u}: root privileges could be regained"),
        }
    }
}

impl std::error::Error for UserError {}

/// Switches the whole process to `user` (name or numeric uid) and that user's primary group.
/// Call before starting threads.
pub fn switch_to(user: &str) -> Result<(u32, u32), UserError> {
    let failed = |step| UserError::Failed {
        user: user.to_string(),
        step,
        error: std::io::Error::last_os_error(),
    };
    let (uid, gid) = lookup(user)?;
    // SAFETY: plain syscalls with valid arguments; results are checked.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(failed("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(failed("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(failed("setuid"));
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(UserError::StillRoot(user.to_string()));
        }
    }
    Ok((uid, gid))
}

fn lookup(user: &str) -> Result<(libc::uid_t, libc::gid_t), UserError> {
    let no_such = || UserError::NoSuchUser(user.to_string());
    let name = CString::new(user).map_err(|_| no_such())?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives the use of `pwd`.
    let r = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if r == 0 && !result.is_null() {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    if r != 0 && r != libc::ENOENT && r != libc::ESRCH {
        return Err(UserError::Failed {
            user: user.to_string(),
            step: "getpwnam_r",
            error: std::io::Error::from_raw_os_error(r),
        });
    }
    // A numeric uid with no passwd entry: use it with gid = uid.
    match user.parse::<u32>() {
        Ok(uid) => Ok((uid, uid)),
        Err(_) => Err(no_such()),
    }
}
