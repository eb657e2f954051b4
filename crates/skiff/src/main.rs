//! `skiff`: Kubernetes, whole, in one binary. Each component is a subcommand.

mod cmd;

/// mimalloc rather than glibc's malloc: the API server's request path
/// allocates and frees many small JSON values on every tokio worker, and a
/// profile of pod creates showed ~20% of the server's CPU in glibc's
/// allocator (arena locking, `malloc_consolidate`, growing and trimming the
/// heap). mimalloc's per-thread free lists make that a fraction. Built
/// without transparent huge pages (`no_thp`): with them, the scheduler spent
/// ~15% of its CPU faulting in and zeroing fresh 2 MiB pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes, whole, in one binary", propagate_version = true)]
struct Cli {
    /// Log filter, in tracing's EnvFilter syntax (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server on the embedded store) and write an admin kubeconfig.
    Server(cmd::server::ServerArgs),
    /// Run Skiff's etcd-compatible store alone, serving the etcd v3 gRPC API.
    Store(cmd::store::StoreArgs),
    /// Simulated nodes (like kwok): Node objects, their Leases, and a fake pod lifecycle.
    Sim(cmd::sim::SimArgs),
    /// The scheduler: binds pending pods to nodes (leader-elected).
    Scheduler(cmd::scheduler::SchedulerArgs),
    /// Run the controllers (Deployment, ReplicaSet, …) against an API server, with leader election.
    ControllerManager(cmd::controller_manager::ControllerManagerArgs),
    /// Run the kubelet (and the embedded container runtime) for this machine.
    Agent(cmd::agent::AgentArgs),
    /// Manage the embedded runtime's images.
    #[command(subcommand)]
    Images(cmd::images::ImagesCmd),
    /// A pod sandbox's PID 1: holds the pod's namespaces and reaps zombies.
    #[command(hide = true)]
    Pause {
        /// Make the sandbox's namespaces first, with this hostname, and say `ready` on stdout.
        #[arg(long)]
        sandbox_hostname: Option<String>,
    },
    /// Keeps a `tty: true` container: holds its terminal, copies its I/O, records its exit.
    #[command(hide = true)]
    Keeper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `skiff pause` and `skiff keeper` as their callers spawn them, handled
/// before clap builds the parser for every subcommand: each pod sandbox
/// starts one pause process (fifty at once in a burst of pods), and the
/// parser's construction was a visible share of a pause's start. Anything
/// else (`skiff pause --help`, odd arguments) goes through clap as usual.
fn fast_path() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).take(8).collect();
    let args: Option<Vec<&str>> = args.iter().map(|a| a.to_str()).collect();
    match args.as_deref() {
        Some(["pause"]) => skiff_runtime::pause::main(None),
        Some(["pause", "--sandbox-hostname", host]) if !host.starts_with('-') => skiff_runtime::pause::main(Some(host)),
        Some(["keeper", rest @ ..]) if rest.len() == 6 && rest.iter().all(|a| !a.starts_with('-')) => {
            skiff_runtime::keeper::main(&rest.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        }
        _ => {}
    }
}

fn main() -> std::process::ExitCode {
    fast_path();
    let cli = Cli::parse();
    if let Command::Pause { sandbox_hostname } = &cli.command {
        skiff_runtime::pause::main(sandbox_hostname.as_deref());
    }
    if let Command::Keeper { args } = &cli.command {
        skiff_runtime::keeper::main(args);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.command {
            Command::Server(args) => cmd::server::run(args).await,
            Command::Store(args) => cmd::store::run(args).await,
            Command::Sim(args) => cmd::sim::run(args).await,
            Command::Scheduler(args) => cmd::scheduler::run(args).await,
            Command::ControllerManager(args) => cmd::controller_manager::run(args).await,
            Command::Agent(args) => cmd::agent::run(args).await,
            Command::Images(c) => cmd::images::run(c),
            Command::Pause { .. } | Command::Keeper { .. } => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
