//! `mse init`: writes `mse.toml` from answers to the questions MSE asks, given
//! at the prompt or as flags.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::commands::{absolute, print_diagnostics};
use crate::exit::{CmdResult, Failure};

/// Arguments of `mse init`. Every question has a flag, so that it can run
/// without a terminal.
#[derive(Debug, Default, clap::Args)]
#[command(
    after_help = "Without a terminal every answer comes from a flag or its default (--name has \
none), and the file is written only when it is valid: otherwise the exit code is 2 and the errors \
name what is missing (the code folder and its module must exist already)."
)]
pub struct Args {
    /// File to write [default: ./mse.toml]
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
    /// Overwrite the file if it exists
    #[arg(long)]
    force: bool,
    /// App name (unique among the running apps of the project)
    #[arg(long)]
    name: Option<String>,
    /// Project name [default: default]
    #[arg(long)]
    project: Option<String>,
    /// Resource name [default: free]
    #[arg(long)]
    resource: Option<String>,
    /// Runtime image reference [default: ghcr.io/cosmian/mse-flask:20230124182826]
    #[arg(long, value_name = "IMAGE")]
    docker: Option<String>,
    /// Code folder, relative to the written file [default: .]
    #[arg(long, value_name = "DIR")]
    code_location: Option<String>,
    /// Application object as module:variable [default: app:app]
    #[arg(long, value_name = "MODULE:VARIABLE")]
    python_application: Option<String>,
    /// Health check endpoint [default: /]
    #[arg(long, value_name = "PATH")]
    healthcheck_endpoint: Option<String>,
    /// JSON file of secrets given to the app, relative to the written file
    #[arg(long, value_name = "FILE", conflicts_with = "no_secrets")]
    secrets: Option<String>,
    /// The app needs no secrets (do not ask)
    #[arg(long)]
    no_secrets: bool,
}

/// Asks the user one thing at a time.
pub trait Prompter {
    /// Asks for a line of text; `default` is taken on an empty answer.
    fn input(&mut self, prompt: &str, default: Option<&str>) -> anyhow::Result<String>;
    /// Asks a yes/no question.
    fn confirm(&mut self, prompt: &str, default: bool) -> anyhow::Result<bool>;
    /// Tells the user why an answer was refused.
    fn refuse(&mut self, why: &str);
}

/// Prompts on the terminal.
struct TerminalPrompter;

impl Prompter for TerminalPrompter {
    fn input(&mut self, prompt: &str, default: Option<&str>) -> anyhow::Result<String> {
        let mut input = dialoguer::Input::<String>::new().with_prompt(prompt);
        if let Some(default) = default {
            input = input.default(default.to_string());
        }
        Ok(input.interact_text()?)
    }

    fn confirm(&mut self, prompt: &str, default: bool) -> anyhow::Result<bool> {
        // Only used with a terminal, so the refusal is never seen.
        super::confirm(false, prompt, Some(default), || {
            format!("{prompt}: there is no terminal to ask on")
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn refuse(&mut self, why: &str) {
        eprintln!("  {why}");
    }
}

type Check = fn(&str, &Path) -> Result<(), String>;

/// One question: its prompt, the key it answers, its flag, default and check.
struct Question {
    prompt: &'static str,
    key: &'static str,
    flag: &'static str,
    default: Option<&'static str>,
    check: Check,
}

const QUESTIONS: [Question; 7] = [
    Question {
        prompt: "App name",
        key: "name",
        flag: "--name",
        default: None,
        check: |v, _| mse_config::fields::check_name("the app name", v),
    },
    Question {
        prompt: "Project name",
        key: "project",
        flag: "--project",
        default: Some("default"),
        check: |v, _| mse_config::fields::check_name("the project name", v),
    },
    Question {
        prompt: "Resource name",
        key: "resource",
        flag: "--resource",
        default: Some("free"),
        check: |v, _| mse_config::fields::check_resource(v),
    },
    Question {
        prompt: "Docker url",
        key: "code.docker",
        flag: "--docker",
        default: Some(mse_config::DEFAULT_DOCKER_IMAGE),
        check: |v, _| mse_config::fields::check_docker(v).map(|_| ()),
    },
    Question {
        prompt: "Code location",
        key: "code.location",
        flag: "--code-location",
        default: Some("."),
        check: |v, _| {
            if v.trim().is_empty() {
                Err("the code location must not be empty".into())
            } else {
                Ok(())
            }
        },
    },
    Question {
        prompt: "Python application",
        key: "code.python_application",
        flag: "--python-application",
        default: Some("app:app"),
        check: |v, _| mse_config::fields::PythonApplication::parse(v).map(|_| ()),
    },
    Question {
        prompt: "Health check endpoint",
        key: "code.healthcheck_endpoint",
        flag: "--healthcheck-endpoint",
        default: Some("/"),
        check: |v, _| mse_config::fields::check_healthcheck_endpoint(v),
    },
];

fn check_secrets(value: &str, base: &Path) -> Result<(), String> {
    let path = mse_config::fs::resolve(base, Path::new(value));
    mse_config::check_secrets_file(&mse_config::RealFs, &path)
}

/// Every answer, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Answers {
    values: [String; 7],
    secrets: Option<String>,
}

/// Gathers the answers: flags first, then the prompter for the rest, or the
/// defaults when there is no prompter. Missing or invalid flags are errors.
pub fn gather(
    args: &Args,
    base: &Path,
    mut prompter: Option<&mut dyn Prompter>,
) -> Result<Answers, Failure> {
    let flags = [
        &args.name,
        &args.project,
        &args.resource,
        &args.docker,
        &args.code_location,
        &args.python_application,
        &args.healthcheck_endpoint,
    ];
    let mut problems = Vec::new();
    let mut values: [String; 7] = Default::default();
    for ((question, flag), slot) in QUESTIONS.iter().zip(flags).zip(values.iter_mut()) {
        if let Some(value) = flag {
            match (question.check)(value, base) {
                Ok(()) => *slot = value.clone(),
                Err(why) => problems.push(format!("{} {value:?}: {why}", question.flag)),
            }
            continue;
        }
        match prompter.as_deref_mut() {
            Some(prompter) => {
                *slot = ask(
                    prompter,
                    question.prompt,
                    question.default,
                    question.check,
                    base,
                )?;
            }
            None => match question.default {
                Some(default) => *slot = default.to_string(),
                None => problems.push(format!(
                    "{} is required when there is no terminal to ask on",
                    question.flag
                )),
            },
        }
    }
    let secrets = match (&args.secrets, args.no_secrets) {
        (Some(path), _) => match check_secrets(path, base) {
            Ok(()) => Some(path.clone()),
            Err(why) => {
                problems.push(format!("--secrets {path:?}: {why}"));
                None
            }
        },
        (None, true) => None,
        (None, false) => match prompter {
            Some(prompter) if problems.is_empty() => {
                if prompter.confirm(
                    "Does the app need secrets (a JSON file given to it at run time)?",
                    false,
                )? {
                    Some(ask(prompter, "Secrets file", None, check_secrets, base)?)
                } else {
                    None
                }
            }
            _ => None,
        },
    };
    if !problems.is_empty() {
        return Err(Failure::Invalid(format!(
            "cannot write mse.toml:\n  {}",
            problems.join("\n  ")
        )));
    }
    Ok(Answers { values, secrets })
}

fn ask(
    prompter: &mut dyn Prompter,
    prompt: &str,
    default: Option<&str>,
    check: Check,
    base: &Path,
) -> Result<String, Failure> {
    loop {
        let answer = prompter
            .input(prompt, default)
            .map_err(|e| Failure::Other(e.context("cannot read the answer")))?;
        let answer = answer.trim().to_string();
        match check(&answer, base) {
            Ok(()) => return Ok(answer),
            Err(why) => prompter.refuse(&why),
        }
    }
}

/// The TOML text for a set of answers.
pub fn render(answers: &Answers) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let [name, project, resource, docker, location, app, endpoint] = &answers.values;
    let mut text = format!(
        "name = {}\nproject = {}\nresource = {}\n\n[code]\nlocation = {}\ndocker = {}\npython_application = {}\nhealthcheck_endpoint = {}\n",
        quote(name),
        quote(project),
        quote(resource),
        quote(location),
        quote(docker),
        quote(app),
        quote(endpoint),
    );
    if let Some(secrets) = &answers.secrets {
        text.push_str(&format!("secrets = {}\n", quote(secrets)));
    }
    text
}

/// Runs `mse init`.
pub fn run(args: Args) -> CmdResult {
    let path = absolute(
        args.path
            .as_deref()
            .unwrap_or(Path::new(mse_config::FILE_NAME)),
    )?;
    if path.exists() && !args.force {
        return Err(Failure::Invalid(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut terminal = TerminalPrompter;
    let prompter: Option<&mut dyn Prompter> = if interactive {
        Some(&mut terminal)
    } else {
        None
    };
    let answers = gather(&args, &base, prompter)?;
    let text = render(&answers);
    let options = mse_config::Options {
        now: chrono::Utc::now(),
        untrusted_ssl: false,
    };
    let report = mse_config::validate(&path, &text, &mse_config::RealFs, &options);
    // From flags, an invalid file is refused: the flags are the fix.
    if !interactive && !report.is_valid() {
        print_diagnostics(&report);
        return Err(Failure::Invalid(format!(
            "{} was not written: {}",
            path.display(),
            how_to_fix(&report)
        )));
    }
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    outln!("Wrote {}", path.display())?;

    if report.is_valid() {
        outln!("It is valid; `mse validate` shows the resolved configuration.")?;
    } else {
        outln!("It is not valid yet; fix what follows, then run `mse validate`.")?;
        print_diagnostics(&report);
    }
    Ok(())
}

/// What to do about an invalid file written from flags: the flags of the
/// keys in error, or the missing files to create first.
fn how_to_fix(report: &mse_config::Report) -> String {
    let mut flags: Vec<&str> = Vec::new();
    for diagnostic in report.errors() {
        let flag = match diagnostic.key.as_str() {
            "code.secrets" => Some("--secrets"),
            key => QUESTIONS.iter().find(|q| q.key == key).map(|q| q.flag),
        };
        if let Some(flag) = flag.filter(|f| !flags.contains(f)) {
            flags.push(flag);
        }
    }
    let errors = report.errors().count();
    let what = format!("{errors} error{} above", if errors == 1 { "" } else { "s" });
    if flags.is_empty() {
        return format!("{what}; fix them, or create an app with `mse scaffold NAME`");
    }
    format!(
        "{what}; give {} naming what exists (the code folder and its module must be there \
         already), or create an app with `mse scaffold NAME`",
        flags.join(" and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers from a script, and a record of what was refused.
    struct Scripted {
        answers: VecDeque<&'static str>,
        confirms: VecDeque<bool>,
        asked: Vec<String>,
        refused: Vec<String>,
    }

    impl Prompter for Scripted {
        fn input(&mut self, prompt: &str, default: Option<&str>) -> anyhow::Result<String> {
            self.asked.push(prompt.to_string());
            let answer = self
                .answers
                .pop_front()
                .expect("the script ran out of answers");
            Ok(match (answer, default) {
                ("", Some(default)) => default.to_string(),
                (answer, _) => answer.to_string(),
            })
        }
        fn confirm(&mut self, prompt: &str, default: bool) -> anyhow::Result<bool> {
            self.asked.push(prompt.to_string());
            Ok(self.confirms.pop_front().unwrap_or(default))
        }
        fn refuse(&mut self, why: &str) {
            self.refused.push(why.to_string());
        }
    }

    fn scripted(answers: &[&'static str], confirms: &[bool]) -> Scripted {
        Scripted {
            answers: answers.iter().copied().collect(),
            confirms: confirms.iter().copied().collect(),
            asked: Vec::new(),
            refused: Vec::new(),
        }
    }

    #[test]
    fn init_asks_every_question_in_order_and_takes_defaults_on_empty_answers() {
        let mut prompter = scripted(&["myapp", "", "", "", "", "", ""], &[false]);
        let answers = gather(&Args::default(), Path::new("/tmp"), Some(&mut prompter)).unwrap();
        assert_eq!(
            prompter.asked[..7],
            [
                "App name",
                "Project name",
                "Resource name",
                "Docker url",
                "Code location",
                "Python application",
                "Health check endpoint"
            ]
        );
        assert!(prompter.asked[7].contains("secrets"));
        assert_eq!(
            render(&answers),
            "name = \"myapp\"\nproject = \"default\"\nresource = \"free\"\n\n[code]\nlocation = \".\"\ndocker = \"ghcr.io/cosmian/mse-flask:20230124182826\"\npython_application = \"app:app\"\nhealthcheck_endpoint = \"/\"\n"
        );
    }

    #[test]
    fn init_asks_again_after_an_invalid_answer() {
        let mut prompter = scripted(
            &[
                "myapp",
                "",
                "a-resource-name-too-long",
                "tiny",
                "",
                "",
                "app",
                "app:app",
                "health",
                "/health",
            ],
            &[false],
        );
        let answers = gather(&Args::default(), Path::new("/tmp"), Some(&mut prompter)).unwrap();
        assert_eq!(prompter.refused.len(), 3, "{:?}", prompter.refused);
        assert!(prompter.refused[0].contains("at most 16"));
        assert!(prompter.refused[1].contains("module:variable"));
        assert!(prompter.refused[2].contains("start with `/`"));
        assert_eq!(answers.values[2], "tiny");
        assert_eq!(answers.values[6], "/health");
    }

    #[test]
    fn init_without_a_terminal_needs_the_name_and_uses_defaults_for_the_rest() {
        let err = gather(&Args::default(), Path::new("/tmp"), None).unwrap_err();
        assert!(err.to_string().contains("--name is required"), "{err}");
        let args = Args {
            name: Some("x".into()),
            ..Args::default()
        };
        let answers = gather(&args, Path::new("/tmp"), None).unwrap();
        assert_eq!(answers.values[1], "default");
        assert_eq!(answers.secrets, None);
    }

    #[test]
    fn init_reports_every_invalid_flag_at_once() {
        let args = Args {
            name: Some(String::new()),
            resource: Some("x".repeat(20)),
            healthcheck_endpoint: Some("health".into()),
            secrets: Some("/nonexistent/secrets.json".into()),
            ..Args::default()
        };
        let err = gather(&args, Path::new("/tmp"), None)
            .unwrap_err()
            .to_string();
        for flag in [
            "--name",
            "--resource",
            "--healthcheck-endpoint",
            "--secrets",
        ] {
            assert!(err.contains(flag), "{flag} missing from: {err}");
        }
    }
}
