//! Finding the ONNX Runtime shared library and telling its version from its file name.
//!
//! The search order is: `ORT_DYLIB_PATH`; the project-local Python environment
//! `<dir>/.cache/venv` of the current directory, the executable's directory, or any directory
//! above them; the `onnxruntime` package of the `python3` on `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ONNX Runtime minor version `ort` 2.0.0-rc.15 is built against (1.31.x).
pub const REQUIRED_MINOR: u32 = 31;

/// What a user can do when no suitable library is found.
pub const HOW_TO_FIX: &str = "install it with `pip install onnxruntime==1.31.1`, \
     or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so.1.31.x, or use --engine tract";

/// Finds an ONNX Runtime 1.31 library; the error says where it looked and how to fix it.
pub fn find_library() -> Result<PathBuf, String> {
    let mut start_dirs = Vec::new();
    if let Ok(dir) = std::env::current_dir() {
        start_dirs.push(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        start_dirs.push(dir);
    }
    locate(
        std::env::var_os("ORT_DYLIB_PATH"),
        &start_dirs,
        python_onnxruntime_dir,
    )
}

/// [`find_library`] with its inputs made explicit: the value of `ORT_DYLIB_PATH`, the
/// directories to search upwards from for `.cache/venv`, and how to ask Python for its
/// `onnxruntime` package directory.
pub fn locate(
    env_value: Option<OsString>,
    start_dirs: &[PathBuf],
    python_package_dir: impl FnOnce() -> Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "ORT_DYLIB_PATH is set to {} but no such file exists; point it at libonnxruntime.so.1.31.x, \
                 or unset it and run `pip install onnxruntime==1.31.1`, or use --engine tract",
                path.display()
            ))
        };
    }
    let mut rejected = Vec::new();
    for start in start_dirs {
        for dir in start.ancestors() {
            let venv_lib = dir.join(".cache").join("venv").join("lib");
            let Ok(entries) = std::fs::read_dir(&venv_lib) else {
                continue;
            };
            let mut pythons: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .map(|e| e.path())
                .collect();
            pythons.sort();
            for python in pythons {
                let capi = python
                    .join("site-packages")
                    .join("onnxruntime")
                    .join("capi");
                match library_in(&capi) {
                    Ok(Some(path)) => return Ok(path),
                    Ok(None) => {}
                    Err(other) => rejected.push(other),
                }
            }
        }
    }
    if let Some(package) = python_package_dir() {
        match library_in(&package.join("capi")) {
            Ok(Some(path)) => return Ok(path),
            Ok(None) => {}
            Err(other) => rejected.push(other),
        }
    }
    let found = if rejected.is_empty() {
        String::new()
    } else {
        format!(
            " (found only other versions: {})",
            rejected
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(format!(
        "ONNX Runtime 1.{REQUIRED_MINOR}.x was not found: ORT_DYLIB_PATH is not set, no .cache/venv \
         above the current or executable directory holds onnxruntime, and python3 has no onnxruntime \
         package{found}; {HOW_TO_FIX}"
    ))
}

/// The 1.31 library in an `onnxruntime/capi` directory; `Err` carries a library of another
/// version found there instead.
fn library_in(capi: &Path) -> Result<Option<PathBuf>, PathBuf> {
    let Ok(entries) = std::fs::read_dir(capi) else {
        return Ok(None);
    };
    let mut other = None;
    let mut libraries: Vec<(PathBuf, (u32, u32, u32))> = entries
        .flatten()
        .filter_map(|e| {
            let version = version_from_file_name(&e.file_name().to_string_lossy())?;
            Some((e.path(), version))
        })
        .collect();
    libraries.sort_by_key(|(_, version)| *version);
    for (path, (major, minor, _)) in libraries.into_iter().rev() {
        if (major, minor) == (1, REQUIRED_MINOR) {
            return Ok(Some(path));
        }
        other.get_or_insert(path);
    }
    other.map_or(Ok(None), Err)
}

/// The version in an ONNX Runtime library file name: `libonnxruntime.so.1.31.1` (Linux) or
/// `libonnxruntime.1.31.1.dylib` (macOS).
pub fn version_from_file_name(name: &str) -> Option<(u32, u32, u32)> {
    let rest = name.strip_prefix("libonnxruntime.")?;
    let numbers = rest
        .strip_prefix("so.")
        .or_else(|| rest.strip_suffix(".dylib"))?;
    let mut parts = numbers.split('.').map(|p| p.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Checks the version a library's file name (after following symlinks) announces; names
/// without a version pass, and `ort` itself refuses libraries older than 1.31 when loading.
pub fn check_version(path: &Path) -> Result<(), String> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(name) = resolved
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return Ok(());
    };
    match version_from_file_name(&name) {
        Some((1, minor, _)) if minor == REQUIRED_MINOR => Ok(()),
        Some((major, minor, patch)) => Err(format!(
            "{} is ONNX Runtime {major}.{minor}.{patch} but Spindle needs 1.{REQUIRED_MINOR}.x; {HOW_TO_FIX}",
            path.display()
        )),
        None => Ok(()),
    }
}

/// Asks `python3` where its `onnxruntime` package lives.
fn python_onnxruntime_dir() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    let dir = PathBuf::from(dir.trim());
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_versions_from_file_names() {
        assert_eq!(
            version_from_file_name("libonnxruntime.so.1.31.1"),
            Some((1, 31, 1))
        );
        assert_eq!(
            version_from_file_name("libonnxruntime.1.20.0.dylib"),
            Some((1, 20, 0))
        );
        assert_eq!(version_from_file_name("libonnxruntime.so"), None);
        assert_eq!(version_from_file_name("libonnxruntime.so.1.31"), None);
        assert_eq!(
            version_from_file_name("libonnxruntime_providers_shared.so"),
            None
        );
    }

    #[test]
    fn a_bad_env_path_is_named() {
        let err = locate(
            Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
            &[],
            || None,
        )
        .unwrap_err();
        assert!(
            err.contains("ORT_DYLIB_PATH is set to /nonexistent/libonnxruntime.so.1.31.1"),
            "{err}"
        );
    }

    #[test]
    fn nothing_found_says_how_to_fix_it() {
        let empty = tempfile::tempdir().unwrap();
        let err = locate(None, &[empty.path().to_path_buf()], || None).unwrap_err();
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
        assert!(err.contains("ORT_DYLIB_PATH="), "{err}");
        assert!(err.contains("--engine tract"), "{err}");
    }

    fn fake_venv(root: &Path, library: &str) -> PathBuf {
        let capi = root.join(".cache/venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        std::fs::write(capi.join(library), b"").unwrap();
        capi.join(library)
    }

    #[test]
    fn finds_the_project_venv_from_a_subdirectory() {
        let root = tempfile::tempdir().unwrap();
        let library = fake_venv(root.path(), "libonnxruntime.so.1.31.1");
        let deep = root.path().join("target/release/deps");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(locate(None, &[deep], || None).unwrap(), library);
    }

    #[test]
    fn other_versions_are_reported_not_used() {
        let root = tempfile::tempdir().unwrap();
        let library = fake_venv(root.path(), "libonnxruntime.so.1.20.0");
        let err = locate(None, &[root.path().to_path_buf()], || None).unwrap_err();
        assert!(err.contains(&library.display().to_string()), "{err}");
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
        assert!(check_version(&library).unwrap_err().contains("1.20.0"));
    }

    #[test]
    fn python_package_is_the_last_resort() {
        let root = tempfile::tempdir().unwrap();
        let library = fake_venv(root.path(), "libonnxruntime.so.1.31.0");
        let package = library.parent().unwrap().parent().unwrap().to_path_buf();
        let found = locate(None, &[], || Some(package)).unwrap();
        assert_eq!(found, library);
    }
}
