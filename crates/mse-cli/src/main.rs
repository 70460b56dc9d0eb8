//! `mse`: the app owner's and app user's command line.

// First, so that the commands see its macros.
#[macro_use]
mod out;

mod api;
mod catalog;
mod commands;
mod conf;
mod exit;
mod fetch;
mod owner_key;
mod poll;
mod profile;
mod progress;
mod reach;
mod render;
mod views;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use exit::Failure;

/// The `mse` command line.
#[derive(Debug, Parser)]
#[command(
    name = "mse",
    version,
    about = "MSE client: create Python web apps, deploy them encrypted into attested confidential-computing nodes, manage them, and verify running ones.",
    after_help = "Exit codes: 0 success, 2 invalid configuration or usage, 1 any other failure."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new app folder: a Flask example, its tests and mse.toml
    Scaffold(commands::scaffold::Args),
    /// Write mse.toml by answering questions (or from flags)
    Init(commands::init::Args),
    /// Check mse.toml without a server and show the resolved configuration
    Validate(commands::validate::Args),
    /// Run the plaintext app locally in its image's runtime environment
    Test(commands::test::Args),
    /// Log in to a platform: check the token, save the platform's signer key and CAs
    Login(commands::login::Args),
    /// Forget the saved platform profile
    Logout(commands::login::LogoutArgs),
    /// Deploy the app of mse.toml: package, upload, verify the node, send it the key, wait until it runs
    Deploy(commands::deploy::Args),
    /// List your apps on the platform: the live ones, or --all
    List(commands::apps::ListArgs),
    /// Show an app's configuration, resources, expiry and status
    Status(commands::apps::StatusArgs),
    /// Print an app's log (its last 64 kB); --follow keeps printing
    Logs(commands::apps::LogsArgs),
    /// Stop an app and wait until it has stopped; removes its local context
    Stop(commands::apps::StopArgs),
    /// Remove a stopped or failed app, and its log, from the platform
    Remove(commands::apps::RemoveArgs),
    /// Verify that an app runs the expected code in a genuine TEE (no account needed), or check a quote
    Verify(Box<commands::verify::Args>),
    /// The platform's key service: `mse keys verify` checks its attestation
    Keys(commands::keys::Args),
    /// The release policy your key signed for a kept app: `mse policy show|edit NAME`
    Policy(commands::policy::Args),
    /// New keys for a kept app: a new code key, and --secrets, --storage-key (redeploys it)
    Rotate(commands::rotate::Args),
    /// List, export or remove the saved deployment contexts
    Context(commands::context::Args),
    /// Encrypt the code folder into a deterministic code.tar, with its key and nonces
    Package(commands::package::Args),
}

fn main() -> ExitCode {
    let help = format!(
        "The client keeps its state in {} (set {} to change it).\n\
         Exit codes: 0 success, 2 invalid configuration or usage, 1 any other failure.",
        conf::conf_dir().display(),
        conf::CONF_PATH_ENV
    );
    let matches = Cli::command().after_help(help).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let result = match cli.command {
        Command::Scaffold(args) => commands::scaffold::run(args),
        Command::Init(args) => commands::init::run(args),
        Command::Validate(args) => commands::validate::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Package(args) => commands::package::run(args),
        Command::Context(args) => commands::context::run(args),
        Command::Verify(args) => commands::verify::run(*args),
        Command::Keys(args) => commands::keys::run(args),
        Command::Policy(args) => commands::policy::run(args),
        Command::Rotate(args) => commands::rotate::run(args),
        Command::Deploy(args) => commands::deploy::run(args),
        Command::Login(args) => commands::login::run(args),
        Command::Logout(args) => commands::login::logout(args),
        Command::List(args) => commands::apps::list(args),
        Command::Status(args) => commands::apps::status(args),
        Command::Logs(args) => commands::apps::logs(args),
        Command::Stop(args) => commands::apps::stop(args),
        Command::Remove(args) => commands::apps::remove(args),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            if !matches!(failure, Failure::Reported | Failure::ClosedOutput) {
                eprintln!("{} {failure}", render::error_prefix());
            }
            ExitCode::from(failure.code())
        }
    }
}
