//! Loading the ONNX Runtime library and creating its environment, once per process.
//!
//! `ort` keeps the loaded library in a process-global slot that can be filled only once, and
//! allows one environment per process. So a successful load is remembered here and reused;
//! a failure before the library was loaded (missing file, wrong version in the name, `dlopen`
//! error) is not, so a later call with a better path can still succeed; a failure after it
//! was loaded is remembered, because nothing can unload it.

use crate::library;
use ort::environment::Environment;
use spindle_core::engine::EngineError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// A loaded library and its environment.
#[derive(Clone)]
pub(crate) struct Runtime {
    pub path: PathBuf,
    pub environment: Environment,
}

/// `None` until a load was attempted far enough to fill `ort`'s global slot.
static RUNTIME: Mutex<Option<Result<Runtime, String>>> = Mutex::new(None);

/// Loads ONNX Runtime from `path` (or from [`library::find_library`] when `None`) and creates
/// the process's environment. Calling it again with the same library is cheap.
pub fn init(path: Option<&Path>) -> Result<(), EngineError> {
    runtime(path).map(|_| ())
}

/// The process's runtime, loading it on first use.
pub(crate) fn runtime(path: Option<&Path>) -> Result<Runtime, EngineError> {
    if let Some(path) = path {
        if !path.is_file() {
            return Err(missing(path));
        }
        library::check_version(path).map_err(EngineError::Unavailable)?;
    }
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = slot.as_ref() {
        let loaded = loaded.clone().map_err(EngineError::Unavailable)?;
        return match path {
            Some(path) if !same_file(path, &loaded.path) => Err(EngineError::Unavailable(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot also load {}",
                loaded.path.display(),
                path.display()
            ))),
            _ => Ok(loaded),
        };
    }
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => library::find_library().map_err(EngineError::Unavailable)?,
    };
    if !path.is_file() {
        return Err(missing(&path));
    }
    library::check_version(&path).map_err(EngineError::Unavailable)?;

    let loaded = catch_unwind(AssertUnwindSafe(|| ort::init_from(&path)))
        .map_err(|_| format!("loading ONNX Runtime from {} panicked", path.display()))
        .and_then(|result| result.map_err(|e| e.to_string()));
    let builder = match loaded {
        Ok(builder) => builder,
        // Nothing was loaded: a later call may try another path.
        Err(e) => {
            return Err(EngineError::Unavailable(format!(
                "cannot load ONNX Runtime: {e}; {}",
                library::HOW_TO_FIX
            )));
        }
    };
    let built = catch_unwind(AssertUnwindSafe(|| {
        builder.with_name("spindle").with_telemetry(false).build()
    }))
    .map_err(|_| "creating the ONNX Runtime environment panicked".to_string())
    .and_then(|result| {
        result.map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
    })
    .map(|environment| Runtime {
        path: path.clone(),
        environment,
    });
    *slot = Some(built.clone());
    built.map_err(EngineError::Unavailable)
}

fn missing(path: &Path) -> EngineError {
    EngineError::Unavailable(format!(
        "ONNX Runtime library {} does not exist; {}",
        path.display(),
        library::HOW_TO_FIX
    ))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
