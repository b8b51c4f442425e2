//! What both binaries' `main` does around their work: start the async runtime, run, and turn
//! the outcome into an exit code with the error's type and message on stderr.

use std::future::Future;
use std::process::ExitCode;

use crate::error::AppError;

/// True when the process runs under the Lambda Runtime API.
pub fn under_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

pub fn run_main<F>(work: F) -> ExitCode
where
    F: Future<Output = Result<(), AppError>>,
{
    keep_memory_flat();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error ({}): {error}", error.kind());
            ExitCode::FAILURE
        }
    }
}

/// Pages and objects are buffers of megabytes, allocated and freed all run long. glibc's malloc
/// by default raises its mmap threshold to the largest block freed so far, after which such
/// buffers come from the heap and fragment it, and gives each thread its own arena: a 100k-alert
/// sync then peaks near 60 MB where 45 MB are in use (the end-to-end benchmark shows both). A
/// fixed threshold returns each big buffer to the system when freed; two arenas are plenty for
/// a runtime of two worker threads. Called before any thread starts.
fn keep_memory_flat() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
