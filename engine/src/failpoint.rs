//! Named failpoints at every disk operation, for fault-injection tests.
//!
//! Without the `failpoints` feature every check is an empty inline function and the
//! optimiser removes it. With it, a test arms a point by name, scoped to paths under a
//! directory (so tests running side by side in one process do not see each other's
//! faults), and the next operations on a matching path fail as told.
//!
//! Points: `segment.write`, `segment.flush`, `segment.truncate`, `segment.read`,
//! `index.write`, `checkpoint.write`, `checkpoint.rename`, `snapshot.write`.

use std::io;
use std::path::Path;

/// What an armed failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail the operation with an I/O error.
    Error,
    /// For writes: write only the first `keep_bytes` of the buffer's data (the rest of
    /// the touched blocks is zeroed, as a torn sector write leaves it), then fail.
    TornWrite { keep_bytes: usize },
}

#[cfg(feature = "failpoints")]
mod armed {
    use super::Action;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    struct Point {
        name: String,
        scope: PathBuf,
        action: Action,
        skip: u32,
        hits_left: u32,
    }

    static POINTS: Mutex<Vec<Point>> = Mutex::new(Vec::new());

    pub fn arm(name: &str, scope: &Path, action: Action, skip: u32, hits: u32) {
        if let Ok(mut points) = POINTS.lock() {
            points.retain(|p| !(p.name == name && p.scope == scope));
            points.push(Point {
                name: name.into(),
                scope: scope.into(),
                action,
                skip,
                hits_left: hits,
            });
        }
    }

    pub fn disarm_all(scope: &Path) {
        if let Ok(mut points) = POINTS.lock() {
            points.retain(|p| p.scope != scope);
        }
    }

    pub fn hit(name: &str, path: &Path) -> Option<Action> {
        let mut points = POINTS.lock().ok()?;
        let point = points
            .iter_mut()
            .find(|p| p.name == name && path.starts_with(&p.scope))?;
        if point.skip > 0 {
            point.skip -= 1;
            return None;
        }
        if point.hits_left == 0 {
            return None;
        }
        point.hits_left -= 1;
        Some(point.action)
    }
}

/// Arms failpoint `name` for paths under `scope`: after `skip` passing operations,
/// the next `hits` operations do `action`.
#[cfg(feature = "failpoints")]
pub fn arm(name: &str, scope: &Path, action: Action, skip: u32, hits: u32) {
    armed::arm(name, scope, action, skip, hits);
}

/// Disarms every failpoint scoped to `scope`.
#[cfg(feature = "failpoints")]
pub fn disarm_all(scope: &Path) {
    armed::disarm_all(scope);
}

/// What failpoint `name` says for an operation on `path`.
#[inline]
#[allow(unused_variables)]
pub(crate) fn hit(name: &str, path: &Path) -> Option<Action> {
    #[cfg(feature = "failpoints")]
    {
        armed::hit(name, path)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        None
    }
}

/// Fails with an injected error if failpoint `name` is armed for `path`.
#[inline]
pub(crate) fn check(name: &str, path: &Path) -> io::Result<()> {
    match hit(name, path) {
        Some(_) => Err(injected(name)),
        None => Ok(()),
    }
}

pub(crate) fn injected(name: &str) -> io::Error {
    io::Error::other(format!("failpoint {name} injected an error"))
}
