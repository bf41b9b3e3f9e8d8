//! The `taxinbox` binary: telemetry, the command line, the exit code. Everything else is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = taxinbox::cli::Cli::parse_args();
    taxinbox::telemetry::init(cli.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taxinbox: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(taxinbox::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("taxinbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
