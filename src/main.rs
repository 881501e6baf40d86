//! `netpulse`: one binary, four roles. Parses arguments and hands over to `app::run`.

mod app;
mod cli;

/// mimalloc instead of the system allocator: the collector allocates per update, and
/// glibc malloc (with its consolidation and page faults) took about 40 % of its CPU at
/// saturation; mimalloc nearly doubled updates per CPU-second (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    app::init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("netpulse: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netpulse: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
