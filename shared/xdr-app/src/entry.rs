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
