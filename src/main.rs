//! `picket`: parses the command line, runs the subcommand, prints any error with its causes.

use picket::cli::{Command, ManagerArgs, Picket};
use picket::clock::RealClock;
use picket::service::LogFormat;
use picket::{admin, agent, bench, manager};
use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

// glibc's allocator took a fifth of the session thread's CPU searching and merging free chunks once
// 100,000 computers' records and TLS buffers fragmented its heap (`picket bench`, perf); mimalloc
// keeps size classes apart, so allocating costs the same at 1k and 100k computers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (program, rest) = match strs.split_first() {
        Some((program, rest)) => (*program, rest),
        None => ("picket", &[][..]),
    };
    // argh has no version flag of its own; `picket --version` prints `picket VERSION` (a
    // contract: packages and install scripts read it).
    if rest == ["--version"] {
        println!("picket {}", picket::release::version());
        return ExitCode::SUCCESS;
    }
    let cli = match <Picket as argh::FromArgs>::from_args(&[program], rest) {
        Ok(cli) => cli,
        Err(early) => {
            // argh's "early exit" is either --help (success) or a usage error (exit code 2).
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output);
                    ExitCode::from(2)
                }
            };
        }
    };
    // After parsing: the manager and the agent choose their log format on the command line.
    picket::service::logging::init(match &cli.command {
        Command::Manager(args) => args.log_format,
        Command::Agent(args) => args.log_format,
        _ => LogFormat::Auto,
    });
    run(cli)
}

fn run(cli: Picket) -> ExitCode {
    let result: Result<(), (Box<dyn Error>, u8)> = match cli.command {
        Command::Manager(args) => {
            let data_dir = match picket::site::data_dir(args.data_dir.clone()) {
                Ok(dir) => dir,
                Err(usage) => return usage_error("manager", &usage),
            };
            let backups = match args.backups(&data_dir) {
                Ok(backups) => backups,
                Err(usage) => return usage_error("manager", &usage),
            };
            run_manager(args, data_dir, backups).map_err(|e| (Box::new(e) as Box<dyn Error>, 1))
        }
        Command::Policies(p) => admin::policies(p.verb).map_err(admin_failure),
        Command::Computers(c) => admin::computers(c.verb).map_err(admin_failure),
        Command::Token(t) => admin::tokens(t.verb).map_err(admin_failure),
        Command::Events(e) => admin::events(e.verb).map_err(admin_failure),
        Command::Alerts(a) => admin::alerts(a.verb).map_err(admin_failure),
        Command::Notifications(a) => admin::notifications(a.verb).map_err(admin_failure),
        Command::Maintenance(a) => admin::maintenance(a.verb).map_err(admin_failure),
        Command::Backup(a) => admin::backup(a).map_err(admin_failure),
        Command::Restore(a) => admin::restore(a).map_err(admin_failure),
        Command::Check(a) => admin::check(a).map_err(admin_failure),
        Command::Agent(args) => match (args.token(), picket::site::data_dir(args.data_dir.clone()))
        {
            (Err(usage), _) => return usage_error("agent", &usage),
            (_, Err(usage)) => return usage_error("agent", &usage),
            (Ok(token), Ok(data_dir)) => agent::run(
                agent::AgentOptions {
                    data_dir,
                    manager: args.manager,
                    token,
                    ca_sha256: args.ca_sha256,
                    hostname: args.hostname.unwrap_or_else(picket::site::system_hostname),
                    listen: args.listen,
                    activate_only: args.activate_only,
                },
                agent::process_clock().as_ref(),
            )
            .map_err(|e| (Box::new(e) as Box<dyn Error>, 1)),
        },
        Command::Bench(args) => bench::run(&args).map_err(|e| {
            let code = e.exit_code();
            (Box::new(e) as Box<dyn Error>, code)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((error, code)) => {
            print_chain(error.as_ref());
            ExitCode::from(code)
        }
    }
}

fn run_manager(
    args: ManagerArgs,
    data_dir: PathBuf,
    backups: Option<manager::backups::Schedule>,
) -> Result<(), manager::ManagerError> {
    if args.reset_admin_password {
        return manager::reset_admin_password(&data_dir, &RealClock::new());
    }
    manager::run(
        manager::ManagerConfig {
            backups,
            incidents: args.incidents(),
            data_dir,
            agent_listen: args.agent_listen,
            console_listen: args.console_listen,
            hostname: args.hostname.unwrap_or_else(picket::site::system_hostname),
            event_retention: args.event_retention.0,
            store_reserve: args.store_reserve,
        },
        Arc::new(RealClock::new()),
    )
}

/// A command line that cannot run: the message, and exit code 2.
fn usage_error(command: &str, problem: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("picket {command}: {problem}");
    ExitCode::from(2)
}

fn admin_failure(e: admin::AdminError) -> (Box<dyn Error>, u8) {
    let code = e.exit_code();
    (Box::new(e), code)
}

/// `error: top`, then `  caused by: ...` for each source, so the root cause is never hidden.
fn print_chain(error: &dyn Error) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}
