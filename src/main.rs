//! The `taxinbox` binary: telemetry, the command line, the exit code. Everything else is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match taxinbox::cli::Cli::try_parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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
        Err(e) => match taxinbox::cli::exit::of(&e) {
            // A closed standard output (`taxinbox calendar | head`): the reader has what it wanted.
            None => ExitCode::SUCCESS,
            Some(code) => {
                eprintln!("taxinbox: {e:#}");
                ExitCode::from(code)
            }
        },
    }
}
